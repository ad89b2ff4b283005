//! `GET /console`: the mission console — fleet KPIs, a node list, the selected node and the
//! attention / findings / event panels — and each panel as a fragment of its own:
//!
//! | URL | fragment |
//! |-----|----------|
//! | `/console/kpis` | the mission bar's counts |
//! | `/console/nodes` | the node list, worst first |
//! | `/console/nodes/{id}` | the selected node |
//! | `/console/nodes/{id}/row` | one row of the node list |
//! | `/console/attention` | why each node is not OK |
//! | `/console/findings` | the latest scans' findings by severity |
//! | `/console/feed` | the global event feed |
//!
//! The page's script (`/assets/console.js`) listens on `/events` and swaps fragments in, so all
//! HTML is rendered here, by maud, escaped. `POST /console/events` takes the panel's forms
//! (note, incident, ack, resolve) with or without the script.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use uuid::Uuid;
use vaultmesh_proto::api::HistoryPoint;
use vaultmesh_proto::{
    AttentionLevel, CheckStatus, EventEnvelope, IncidentState, NodeDetail, NodeSummary, Severity,
};

use super::format::{age, level_name, num2, pct, pill, services_flag};
use crate::api::parse_node_id;
use crate::error::ApiError;
use crate::server::AppState;
use vaultmesh_store::EventQuery;

/// Events shown in the feed and in a node's timeline.
const FEED_LEN: usize = 40;

fn check_pill(s: CheckStatus) -> Markup {
    let class = match s {
        CheckStatus::Ok => "ok",
        CheckStatus::Warn | CheckStatus::Unknown => "attn",
        CheckStatus::Crit => "crit",
    };
    html! { span class={"pill " (class)} { (s.as_str().to_uppercase()) } }
}

fn sev_class(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "crit",
        Severity::Medium => "attn",
        Severity::Low | Severity::Info => "ok",
    }
}

/// A time that the script keeps ticking ("12s ago").
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) data-ago title=(t.to_rfc3339()) { (age(t, now)) } }
}

/// The newest thing on the stream: an event or a heartbeat (what the script stamps too).
fn last_event(state: &AppState) -> Option<DateTime<Utc>> {
    let event = state
        .store
        .recent_events(&EventQuery {
            limit: 1,
            newest_first: true,
            ..EventQuery::default()
        })
        .first()
        .map(|e| e.ts);
    event.max(state.store.newest_seen())
}

/// All summaries with attention, worst first, then by hostname.
fn sorted_nodes(state: &AppState) -> Vec<NodeSummary> {
    let mut v = state.store.summaries();
    state.attention.fill(&mut v);
    v.sort_by(|a, b| {
        b.attention
            .level
            .cmp(&a.attention.level)
            .then_with(|| a.hostname.cmp(&b.hostname))
    });
    v
}

/// A failing notifier as the mission bar shows it.
struct Failing {
    name: String,
    since: Option<DateTime<Utc>>,
    error: Option<String>,
    pending: usize,
}

fn failing_notifiers(state: &AppState) -> Vec<Failing> {
    let Some(n) = &state.notify else {
        return Vec::new();
    };
    n.health()
        .into_iter()
        .filter(|(_, h)| h.consecutive_failures > 0)
        .map(|(name, h)| Failing {
            name,
            since: h.failing_since,
            error: h.last_error,
            pending: h.pending,
        })
        .collect()
}

fn kpis(
    nodes: &[NodeSummary],
    last_event: Option<DateTime<Utc>>,
    failing: &[Failing],
    own: &vaultmesh_proto::Attention,
    now: DateTime<Utc>,
) -> Markup {
    let count = |l: AttentionLevel| nodes.iter().filter(|n| n.attention.level == l).count();
    html! {
        div id="kpis" class="kpis" data-fragment="/console/kpis" {
            @for r in &own.reasons {
                // The Command Center's own trouble (a full or filling disk) comes first.
                span class={"k-cc " (level_name(r.level).0)} role="alert" data-cc-rule=(r.rule) {
                    strong { "Command Center: " } (r.message)
                }
            }
            @for f in failing {
                span class="k-notify" role="alert" data-notifier=(f.name) {
                    "notifier " strong { (f.name) } " failing"
                    @if let Some(t) = f.since { " since " (ago(t, now)) }
                    @if let Some(e) = &f.error { " (" (e) ")" }
                    " — " (f.pending) " waiting"
                }
            }
            span { strong data-kpi="total" { (nodes.len()) } " total" }
            span class="k-ok" { strong data-kpi="ok" { (count(AttentionLevel::Ok)) } " healthy" }
            span class="k-attn" { strong data-kpi="attn" { (count(AttentionLevel::Attn)) } " attention" }
            span class="k-crit" { strong data-kpi="crit" { (count(AttentionLevel::Crit)) } " critical" }
            span class="last-event" { "last event " strong id="last-event" {
                @if let Some(t) = last_event { (ago(t, now)) } @else { "—" }
            } }
        }
    }
}

/// The mark of a hostname another node reports too: the node id is what tells them apart.
fn shared_hostname(id: Uuid) -> Markup {
    let short = id.simple().to_string();
    html! {
        span class="dup" title="Another node reports this hostname; the node id tells them apart" {
            "same name · " (&short[..8])
        }
    }
}

/// The mark of a revoked node: its requests are refused until it enrolls again.
fn revoked_mark(n: &NodeSummary) -> Markup {
    html! {
        @if let Some(r) = &n.revoked {
            " " span class="dup" data-revoked title={"Revoked by " (r.by) "; its requests are refused"} {
                @if r.readmitted { "revoked · re-admitted" } @else { "revoked" }
            }
        }
    }
}

fn node_row(n: &NodeSummary, selected: Option<Uuid>, now: DateTime<Utc>) -> Markup {
    let (level, _) = level_name(n.attention.level);
    let why: Vec<&str> = n
        .attention
        .reasons
        .iter()
        .filter(|r| r.suppressed_by.is_none())
        .map(|r| r.message.as_str())
        .collect();
    html! {
        li data-node-id=(n.node_id) data-level=(level) data-name=(n.hostname)
            data-search={(n.hostname.to_lowercase()) " " (n.os_profile.to_lowercase())}
            class=[(selected == Some(n.node_id)).then_some("selected")] {
            a href={"/console?node=" (n.node_id)} aria-current=[(selected == Some(n.node_id)).then_some("true")] {
                (pill(n.attention.level))
                span class="name" { (n.hostname) }
                @if n.hostname_shared { (shared_hostname(n.node_id)) }
                (revoked_mark(n))
                span class="profile" { (n.os_profile) }
                span class="seen" { (ago(n.last_seen, now)) }
                @if let Some(first) = why.first() {
                    span class="why" data-why { (first) @if why.len() > 1 { " (+" (why.len() - 1) ")" } }
                }
            }
        }
    }
}

fn node_list(nodes: &[NodeSummary], selected: Option<Uuid>, now: DateTime<Utc>) -> Markup {
    html! {
        ul id="node-list" class="node-list" data-fragment="/console/nodes" aria-label="Nodes, worst first" {
            @for n in nodes { (node_row(n, selected, now)) }
            @if nodes.is_empty() { li class="empty" { "No nodes have reported yet." } }
        }
    }
}

/// A small SVG chart of load (per CPU) and memory % over the node's history.
fn history_chart(points: &[HistoryPoint], cpus: Option<u32>) -> Markup {
    const W: f64 = 320.0;
    const H: f64 = 80.0;
    let n = points.len();
    if n < 2 {
        return html! { p class="muted" { "Not enough history for a chart yet." } };
    }
    let x = |i: usize| i as f64 * W / (n - 1) as f64;
    let line = |vals: Vec<Option<f64>>| -> String {
        vals.iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), H - v.clamp(0.0, 1.0) * H)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let cpus = f64::from(cpus.unwrap_or(1).max(1));
    // Load per CPU on a 0..2 scale; memory on 0..100 %.
    let load = line(
        points
            .iter()
            .map(|p| p.load1.map(|l| l / cpus / 2.0))
            .collect(),
    );
    let mem = line(
        points
            .iter()
            .map(|p| p.mem_used_pct.map(|m| m / 100.0))
            .collect(),
    );
    html! {
        figure class="chart" {
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label="Load per CPU and memory use over the node's recent heartbeats" {
                line x1="0" y1=(H / 2.0) x2=(W) y2=(H / 2.0) class="grid" {}
                polyline points=(load) class="load" fill="none" {}
                polyline points=(mem) class="mem" fill="none" {}
            }
            figcaption { span class="swatch load" { "━" } " load/CPU (0–2) " span class="swatch mem" { "━" } " memory % · last " (n) " heartbeats" }
        }
    }
}

/// One entry of a timeline or the feed.
fn event_item(e: &EventEnvelope, now: DateTime<Utc>, show_node: Option<&str>) -> Markup {
    let text = |k: &str| {
        e.body
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let summary = match e.kind.as_str() {
        "note" => text("text"),
        "incident" => format!(
            "{} ({})",
            text("title"),
            e.body
                .get("severity")
                .and_then(|v| v.as_str())
                .unwrap_or("high")
        ),
        "attention" => {
            let level = text("level").to_uppercase();
            let reasons = e.body["reasons"].as_array().cloned().unwrap_or_default();
            let active = reasons
                .iter()
                .find(|r| r.get("suppressed_by").is_none_or(|s| s.is_null()));
            match active
                .and_then(|r| r.get("message"))
                .and_then(|m| m.as_str())
            {
                Some(m) => format!("{level}: {m}"),
                None if reasons.is_empty() => format!("{level}: all clear"),
                None => format!("{level}: {} reason(s) held back", reasons.len()),
            }
        }
        "ack" | "resolve" if text("text").is_empty() => {
            let what = if e.kind == "ack" {
                "acknowledged"
            } else {
                "resolved"
            };
            match e.refs.first() {
                Some(r) => format!("{what} {}", &r.to_string()[..8]),
                None => what.to_string(),
            }
        }
        "tag" => format!("{} {}", text("label"), text("value")),
        "silence" => format!(
            "{} {}",
            e.body
                .get("rule")
                .and_then(|v| v.as_str())
                .unwrap_or("all rules"),
            text("text")
        ),
        _ => text("text"),
    };
    html! {
        li class={"ev ev-" (e.kind)} data-event-id=(e.id) {
            span class="kind" { (e.kind) }
            @if let Some(name) = show_node { span class="node" { (name) } }
            span class="what" { (summary) }
            span class="meta" { (e.author) " · " (ago(e.ts, now)) }
        }
    }
}

/// Hostnames by node id, for the feed.
fn names(state: &AppState) -> std::collections::HashMap<Uuid, String> {
    state
        .store
        .summaries()
        .into_iter()
        .map(|s| (s.node_id, s.hostname))
        .collect()
}

async fn feed_markup(state: &AppState, now: DateTime<Utc>) -> Result<Markup, ApiError> {
    // Memory only: this is refetched on events and must never read the log.
    let events = state.store.recent_events(&EventQuery {
        limit: FEED_LEN,
        newest_first: true,
        ..EventQuery::default()
    });
    let names = names(state);
    Ok(html! {
        ol id="feed" class="feed" data-fragment="/console/feed" aria-label="Event feed, newest first" {
            @for e in &events {
                (event_item(e, now, e.node_id.and_then(|n| names.get(&n)).map(String::as_str)))
            }
            @if events.is_empty() { li class="empty" { "No events yet." } }
        }
    })
}

fn attention_markup(nodes: &[NodeSummary]) -> Markup {
    let needing: Vec<&NodeSummary> = nodes
        .iter()
        .filter(|n| !n.attention.reasons.is_empty())
        .collect();
    html! {
        div id="attention" data-fragment="/console/attention" {
            @if needing.is_empty() { p class="muted" { "Every node is OK." } }
            @for n in &needing {
                section class="why-node" {
                    h3 { (pill(n.attention.level)) " " a href={"/console?node=" (n.node_id)} { (n.hostname) } }
                    ul {
                        @for r in &n.attention.reasons {
                            li class=[r.suppressed_by.is_some().then_some("suppressed")] {
                                span class={"lvl " (level_name(r.level).0)} { (level_name(r.level).1) }
                                " " (r.message)
                                @if let Some(by) = &r.suppressed_by { span class="muted" { " — " (by) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn findings_markup(state: &AppState, nodes: &[NodeSummary]) -> Markup {
    let mut rows = Vec::new();
    let mut counts = std::collections::BTreeMap::<Severity, u64>::new();
    for n in nodes {
        if let Some(scan) = state.store.latest_scan(n.node_id) {
            for f in &scan.findings {
                *counts.entry(f.severity).or_insert(0) += 1;
                if f.severity >= Severity::Medium {
                    rows.push((n.hostname.clone(), n.node_id, f.clone()));
                }
            }
            // Keep memory bounded: only the worst findings are shown.
            if rows.len() > 500 {
                rows.sort_by_key(|r| std::cmp::Reverse(r.2.severity));
                rows.truncate(100);
            }
        }
    }
    rows.sort_by(|a, b| b.2.severity.cmp(&a.2.severity).then(a.0.cmp(&b.0)));
    let shown = rows.len().min(50);
    html! {
        div id="findings" data-fragment="/console/findings" {
            p class="sev-counts" {
                @for s in [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info] {
                    span class={"sev " (sev_class(s))} { (s.as_str()) " " strong { (counts.get(&s).copied().unwrap_or(0)) } }
                }
            }
            @if rows.is_empty() { p class="muted" { "No medium or worse findings in the latest scans." } }
            ul class="findings" {
                @for (host, id, f) in rows.iter().take(shown) {
                    li {
                        span class={"sev " (sev_class(f.severity))} { (f.severity.as_str()) }
                        " " a href={"/console?node=" (id)} { (host) } ": " (f.title)
                    }
                }
            }
            @if rows.len() > shown { p class="muted" { "and " (rows.len() - shown) " more" } }
        }
    }
}

async fn node_markup(
    state: &AppState,
    d: NodeDetail,
    now: DateTime<Utc>,
) -> Result<Markup, ApiError> {
    let id = d.summary.node_id;
    // Memory only (the newest few hundred events of the fleet): refetched on every heartbeat.
    let events = state.store.recent_events(&EventQuery {
        node_id: Some(id),
        limit: FEED_LEN,
        newest_first: true,
        ..EventQuery::default()
    });
    let commands = state.store.commands(Some(id), None, 10);
    let s = &d.summary;
    let hb = &d.latest;
    let m = hb.metrics.as_ref();
    let open_incidents: Vec<_> = d
        .incidents
        .iter()
        .filter(|i| i.state != IncidentState::Resolved)
        .collect();
    Ok(html! {
        article id="node" data-fragment={"/console/nodes/" (id)} data-node-id=(id) {
            header class="node-head" {
                h2 { (pill(s.attention.level)) " " (s.hostname) @if s.hostname_shared { " " (shared_hostname(id)) } (revoked_mark(s)) }
                p class="muted" {
                    span class="id" { (id) } " · " (s.os_profile) " · agent " (s.agent_version.as_deref().unwrap_or("?"))
                    " · last seen " (ago(s.last_seen, now)) " · " (s.heartbeats) " heartbeats"
                }
            }
            div class="tiles" {
                div class="tile" { h4 { "Load 1m" } p { (num2(s.load1)) @if let Some(c) = s.cpu_count { span class="sub" { " / " (c) " CPU" } } } }
                div class="tile" { h4 { "Memory" } p { (pct(s.mem_used_pct)) } }
                div class="tile" { h4 { "Tunnel" } p class=(if hb.cloudflare_ok { "flag ok" } else { "flag bad" }) { (if hb.cloudflare_ok { "connected" } else { "down" }) } }
                div class="tile" { h4 { "Services" } p { (services_flag(hb.services())) } }
            }
            @if let Some(m) = m && !m.disks.is_empty() {
                h3 { "Disks" }
                table class="compact" {
                    thead { tr { th { "Mount" } th { "FS" } th class="num" { "Used" } } }
                    tbody { @for disk in &m.disks { tr { td { (disk.mount) } td { (disk.fs) } td class="num" { (pct(disk.used_pct())) } } } }
                }
            }
            h3 { "History" }
            (history_chart(&d.history, s.cpu_count))
            h3 { "Checks" }
            @if hb.checks.is_empty() { p class="muted" { "This agent reports no checks." } }
            ul class="checks" {
                @for c in &hb.checks { li { (check_pill(c.status)) " " strong { (c.name) } " " span { (c.summary) } } }
            }
            @if let Some(scan) = &d.latest_scan {
                h3 { "Latest scan" }
                p class="muted" { "finished " (ago(scan.finished_at, now)) " · " (scan.findings.len()) " findings" @if !d.drift.is_empty() { " · " (d.drift.len()) " changes since the previous scan" } }
            }
            h3 { "Timeline" }
            ol class="timeline" aria-label="This node's events, newest first" {
                li class="ev ev-heartbeat" { span class="kind" { "heartbeats" } span class="what" { (s.heartbeats) " received, the latest " (ago(s.last_seen, now)) } }
                @for c in &commands {
                    li class="ev ev-command" {
                        span class="kind" { "command" }
                        span class="what" { (c.signed.command.action) " — " (serde_json::to_value(c.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                        span class="meta" { (c.signed.command.issued_by) " · " (ago(c.signed.command.issued_at, now)) }
                    }
                }
                @for e in &events { (event_item(e, now, None)) }
            }
            h3 { "Act" }
            div class="forms" {
                form method="post" action="/console/events" data-console-form {
                    input type="hidden" name="kind" value="note";
                    input type="hidden" name="node_id" value=(id);
                    label { "Note " input name="text" required maxlength="8192" placeholder="What did you see or do?"; }
                    button type="submit" { "Post note" }
                }
                form method="post" action="/console/events" data-console-form {
                    input type="hidden" name="kind" value="incident";
                    input type="hidden" name="node_id" value=(id);
                    label { "Incident " input name="title" required maxlength="256" placeholder="Title"; }
                    label { "Severity " select name="severity" {
                        option value="critical" { "critical" } option value="high" selected { "high" }
                        option value="medium" { "medium" } option value="low" { "low" }
                    } }
                    button type="submit" { "Open incident" }
                }
                @for i in &open_incidents {
                    div class="incident" {
                        span class={"sev " (sev_class(i.severity))} { (i.severity.as_str()) } " " (i.title)
                        " " span class="muted" { (format!("{:?}", i.state).to_lowercase()) }
                        @if i.state == IncidentState::Open {
                            form method="post" action="/console/events" data-console-form class="inline" {
                                input type="hidden" name="kind" value="ack";
                                input type="hidden" name="refs" value=(i.id);
                                button type="submit" { "Acknowledge" }
                            }
                        }
                        form method="post" action="/console/events" data-console-form class="inline" {
                            input type="hidden" name="kind" value="resolve";
                            input type="hidden" name="refs" value=(i.id);
                            button type="submit" { "Resolve" }
                        }
                    }
                }
            }
        }
    })
}

/// The query of `GET /console`.
#[derive(Debug, Deserialize)]
pub struct ConsoleParams {
    node: Option<String>,
    debug: Option<String>,
}

/// `GET /console`.
pub async fn page(
    State(state): State<AppState>,
    Query(p): Query<ConsoleParams>,
) -> Result<Markup, ApiError> {
    let now = Utc::now();
    let nodes = sorted_nodes(&state);
    let selected = match p.node.as_deref() {
        Some(text) => Some(parse_node_id(text)?),
        None => nodes.first().map(|n| n.node_id),
    };
    let center = match selected.and_then(|id| state.store.detail(id)) {
        Some(mut d) => {
            d.summary.attention = state.attention.get(d.summary.node_id);
            node_markup(&state, d, now).await?
        }
        None => html! { article id="node" { p class="muted" { "Select a node." } } },
    };
    let feed = feed_markup(&state, now).await?;
    let last_event = last_event(&state);
    let debug = p.debug.as_deref().is_some_and(|d| d == "1" || d == "true");
    Ok(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Mission Console · VaultMesh" }
                link rel="stylesheet" href="/assets/app.css";
                // No favicon request (and no 404 in the console).
                link rel="icon" href="data:,";
                script src="/assets/console.js" defer {}
            }
            body class="console" data-selected=[selected] data-debug=[debug.then_some("1")] {
                header class="mission-bar" {
                    h1 { a href="/console" { "VaultMesh Mission Console" } }
                    (kpis(&nodes, last_event, &failing_notifiers(&state), &state.attention.fleet(), now))
                    p id="stream-state" class="stream-state" role="status" aria-live="polite" { "connecting…" }
                }
                main class="panels" {
                    nav class="panel left" aria-label="Nodes" {
                        label class="filter" { span class="visually-hidden" { "Filter nodes" }
                            input id="filter" type="search" placeholder="Filter nodes (host or profile)" autocomplete="off";
                        }
                        (node_list(&nodes, selected, now))
                    }
                    section class="panel center" aria-label="Selected node" { (center) }
                    aside class="panel right" aria-label="Attention and events" {
                        h2 { "Attention" }
                        (attention_markup(&nodes))
                        h2 { "Scan findings" }
                        (findings_markup(&state, &nodes))
                        h2 { "Events" }
                        (feed)
                    }
                }
                footer { "vaultmesh-command-center " (crate::VERSION) " · " a href="/" { "overview" } " · " a href="/api/nodes" { "/api/nodes" } }
            }
        }
    })
}

/// `GET /console/kpis`.
pub async fn kpis_fragment(State(state): State<AppState>) -> Result<Markup, ApiError> {
    Ok(kpis(
        &sorted_nodes(&state),
        last_event(&state),
        &failing_notifiers(&state),
        &state.attention.fleet(),
        Utc::now(),
    ))
}

/// The query of `GET /console/nodes`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    selected: Option<String>,
}

/// `GET /console/nodes`.
pub async fn nodes_fragment(
    State(state): State<AppState>,
    Query(p): Query<ListParams>,
) -> Result<Markup, ApiError> {
    let selected = p.selected.as_deref().map(parse_node_id).transpose()?;
    Ok(node_list(&sorted_nodes(&state), selected, Utc::now()))
}

/// `GET /console/nodes/{id}`.
pub async fn node_fragment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Markup, ApiError> {
    let id = parse_node_id(&id)?;
    let mut d = state
        .store
        .detail(id)
        .ok_or_else(|| ApiError::NotFound(format!("no node {id}")))?;
    d.summary.attention = state.attention.get(id);
    node_markup(&state, d, Utc::now()).await
}

/// `GET /console/nodes/{id}/row`: one row of the node list.
pub async fn row_fragment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<ListParams>,
) -> Result<Markup, ApiError> {
    let id = parse_node_id(&id)?;
    let selected = p.selected.as_deref().map(parse_node_id).transpose()?;
    let mut s = state
        .store
        .summary(id)
        .ok_or_else(|| ApiError::NotFound(format!("no node {id}")))?;
    s.attention = state.attention.get(id);
    Ok(node_row(&s, selected, Utc::now()))
}

/// `GET /console/attention`.
pub async fn attention_fragment(State(state): State<AppState>) -> Markup {
    attention_markup(&sorted_nodes(&state))
}

/// `GET /console/findings`.
pub async fn findings_fragment(State(state): State<AppState>) -> Markup {
    findings_markup(&state, &sorted_nodes(&state))
}

/// `GET /console/feed`.
pub async fn feed_fragment(State(state): State<AppState>) -> Result<Markup, ApiError> {
    feed_markup(&state, Utc::now()).await
}

/// A console form: one of note, incident, ack, resolve.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleForm {
    kind: String,
    node_id: Option<String>,
    text: Option<String>,
    title: Option<String>,
    severity: Option<String>,
    refs: Option<String>,
}

/// `POST /console/events`: the console's forms. Answers `201` with the stored envelope to a
/// script (`Accept: application/json`), and a redirect back to the node otherwise.
pub async fn post_form(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    form: Result<Form<ConsoleForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    // Posts from other sites never get here: [`crate::guard`] refuses them for every route.
    let Form(f) = form?;
    let node_id = f
        .node_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(parse_node_id)
        .transpose()?;
    let refs: Vec<Uuid> = f
        .refs
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(parse_node_id)
        .transpose()?
        .into_iter()
        .collect();
    let body = match f.kind.as_str() {
        "note" => serde_json::json!({"text": f.text.unwrap_or_default()}),
        "incident" => serde_json::json!({
            "title": f.title.unwrap_or_default(),
            "severity": f.severity.unwrap_or_else(|| "high".into()),
        }),
        "ack" | "resolve" => match f.text.filter(|t| !t.is_empty()) {
            Some(t) => serde_json::json!({"text": t}),
            None => serde_json::Value::Null,
        },
        other => {
            return Err(ApiError::UnprocessableEntity(format!(
                "the console posts note, incident, ack or resolve, not {:?}",
                other.chars().take(32).collect::<String>()
            )));
        }
    };
    let new = vaultmesh_proto::NewEvent {
        kind: f.kind,
        node_id,
        author: Some(identity.map_or_else(|| "console".into(), |axum::Extension(who)| who.0)),
        body,
        refs,
    };
    let author = new
        .validate()
        .map_err(|e| ApiError::UnprocessableEntity(e.to_string()))?;
    let stored = state.store.record_event(new, author).await?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Ok((StatusCode::CREATED, axum::Json(stored)).into_response());
    }
    let back = match stored.node_id {
        Some(n) => format!("/console?node={n}"),
        None => "/console".into(),
    };
    Ok(Redirect::to(&back).into_response())
}
