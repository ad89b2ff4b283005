//! The mission console (`GET /console`) and each of its panels, which are also fragments of
//! their own (see [`crate::ui::handlers`] for the URLs). Views take plain data — what the
//! handler read from the store — and the clock, never the state.

use std::collections::{BTreeMap, HashMap};

use crate::roles::{Grants, Permission};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use uuid::Uuid;
use vaultmesh_proto::history::{DISK_PREFIX, NodeHistory, Point, Range, Unit};
use vaultmesh_proto::{
    Attention, AttentionLevel, EventEnvelope, Finding, IncidentState, NodeDetail, NodeSummary,
    ScanReport, Severity,
};

use crate::ui::components::{
    Failing, FormTarget, ago, cc_banner, check_pill, event_form, footer, grouped_row, head,
    is_stale, named_link, node_link, node_name, notifier_banner, pill, reason_chip, revoked_mark,
    services_flag, sev_badge, sev_class, shared_hostname,
};
use crate::ui::format::{forecast, level_name, num2, pct};
use crate::ui::forms::{FormKind, Grouping, SILENCE_CHOICES, groupings};
use crate::ui::view::chart::{Chart, Frame, Line, chart, range_words};
use crate::ui::view::dashboard::{EnrollHint, empty_fleet_hint};

/// Findings listed in the findings panel; the rest are counted.
const FINDINGS_SHOWN: usize = 50;

/// The whole console page.
#[derive(Debug, Default)]
pub struct ConsolePage {
    /// Who is signed in, when through an OpenID Connect session: the header offers sign-out.
    pub signed_in: Option<String>,
    /// Every node, worst first ([`super::worst_first`]).
    pub nodes: Vec<NodeSummary>,
    pub selected: Option<Uuid>,
    /// The selected node's panel, when it exists.
    pub node: Option<NodePanel>,
    pub feed: Feed,
    pub findings: Findings,
    /// The newest event or heartbeat.
    pub last_event: Option<DateTime<Utc>>,
    pub failing: Vec<Failing>,
    /// The Command Center's own attention (its disk).
    pub own: Attention,
    /// `?debug=1`: the script logs every event.
    pub debug: bool,
    /// What the center says while no node has reported: how to add one.
    pub hint: EnrollHint,
    /// The id of the newest event the page reflects: the script's stream resumes after it
    /// (`GET /events?since=`) instead of refetching every panel once it connects.
    pub since: Option<String>,
    /// How the node list is grouped (`?group=`).
    pub group: Grouping,
    /// The label keys the fleet's nodes have ([`label_keys`]): the "Group by" choices.
    pub label_keys: Vec<String>,
    /// Said above the list when it is grouped by a label no node has
    /// ([`crate::ui::forms::group_notice`]).
    pub group_notice: Option<String>,
    /// What the signed-in identity may do: the page offers only that.
    pub may: Grants,
}

/// The selected node: its detail, its recent events and commands.
#[derive(Debug)]
pub struct NodePanel {
    pub detail: NodeDetail,
    /// Its events, newest first.
    pub events: Vec<EventEnvelope>,
    /// Its commands, newest first.
    pub commands: Vec<CommandLine>,
    /// The range its charts show.
    pub range: Range,
    /// Its history over `range`: none when the store has none for it, an error's text when
    /// it could not be read.
    pub history: Result<Option<NodeHistory>, String>,
    /// The silences in force that cover it (its own and the fleet's).
    pub silences: Vec<SilenceLine>,
    /// What its profile's policy lets an admin issue to it, in the file's order.
    pub allowed: Vec<AllowedAction>,
    /// Whether this Command Center can sign commands (it has a signing key).
    pub can_sign: bool,
    /// What the signed-in identity may do: the panel offers only that.
    pub may: Grants,
}

/// A silence in force, as the node panel lists it (with a button to end it).
#[derive(Debug, Clone)]
pub struct SilenceLine {
    pub id: Uuid,
    /// Absent: every rule; ending in `.`: a family.
    pub rule: Option<String>,
    /// It covers every node, not only this one.
    pub fleet_wide: bool,
    pub until: Option<DateTime<Utc>>,
    pub until_resolved: bool,
    pub by: String,
}

/// One rule of the node's policy, as the command form offers it: the action and, per
/// argument, the pattern its value must match in full.
#[derive(Debug, Clone)]
pub struct AllowedAction {
    pub action: String,
    pub args: BTreeMap<String, String>,
}

/// A command as the node's timeline shows it.
#[derive(Debug, Clone)]
pub struct CommandLine {
    pub action: String,
    /// `issued`, `delivered`, `ok`, ...
    pub status: String,
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
    /// The receipt's word, once it came: its reason, else the first line of its output.
    pub outcome: Option<String>,
}

/// The global event feed: events, newest first, and the hostnames to name their nodes by.
#[derive(Debug, Default)]
pub struct Feed {
    pub events: Vec<EventEnvelope>,
    pub names: HashMap<Uuid, String>,
}

/// The latest scans' findings: counts by severity, and the medium-or-worse ones to list.
#[derive(Debug, Default)]
pub struct Findings {
    rows: Vec<(String, Uuid, Finding)>,
    counts: BTreeMap<Severity, u64>,
}

impl Findings {
    /// Adds a node's latest scan. Memory stays bounded: past 500 rows only the worst 100 are
    /// kept (only 50 are shown).
    pub fn add(&mut self, host: &str, id: Uuid, scan: &ScanReport) {
        for f in &scan.findings {
            *self.counts.entry(f.severity).or_insert(0) += 1;
            if f.severity >= Severity::Medium {
                self.rows.push((host.to_string(), id, f.clone()));
            }
        }
        if self.rows.len() > 500 {
            self.rows.sort_by_key(|r| std::cmp::Reverse(r.2.severity));
            self.rows.truncate(100);
        }
    }
}

/// The mission bar's banners and counts.
pub fn kpis(
    nodes: &[NodeSummary],
    last_event: Option<DateTime<Utc>>,
    failing: &[Failing],
    own: &Attention,
    now: DateTime<Utc>,
) -> Markup {
    let count = |l: AttentionLevel| nodes.iter().filter(|n| n.attention.level == l).count();
    html! {
        div id="kpis" class="kpis" data-fragment="/console/kpis" {
            // The Command Center's own trouble (a full or filling disk) comes first.
            @for r in &own.reasons { (cc_banner(r)) }
            @for f in failing { (notifier_banner(f, now)) }
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

/// The node list, in the order given (worst first); grouped by `group`, a group per profile
/// or label value (by name, the nodes without the label last), each with its counts by level
/// and its rows in the order given.
pub fn node_list(
    nodes: &[NodeSummary],
    selected: Option<Uuid>,
    group: &Grouping,
    now: DateTime<Utc>,
) -> Markup {
    if *group == Grouping::None || nodes.is_empty() {
        return html! {
            ul id="node-list" class="node-list" data-fragment="/console/nodes" aria-label="Nodes, worst first" {
                @for n in nodes { (grouped_row(n, selected, group, now)) }
                @if nodes.is_empty() { li class="empty" { "No nodes have reported yet. " (super::tokens::add_node_link()) } }
            }
        };
    }
    // By name, the group of the nodes without the label last; rows keep the order given.
    let mut groups: BTreeMap<(bool, &str), Vec<&NodeSummary>> = BTreeMap::new();
    for n in nodes {
        let v = group.value_of(n);
        groups
            .entry((v.is_none(), v.unwrap_or("")))
            .or_default()
            .push(n);
    }
    let none_name = group.none_name();
    html! {
        ul id="node-list" class="node-list grouped" data-fragment="/console/nodes"
            data-group-by=(group.name()) data-none-name=(none_name)
            aria-label={"Nodes by " (group_words(group)) ", worst first in each group"} {
            @for ((none, value), rows) in &groups {
                li class="group" data-group=[(!none).then_some(*value)] {
                    details open {
                        summary class="group-head" {
                            span class="group-name" { @if *none { (none_name) } @else { (value) } }
                            (group_counts(rows))
                        }
                        ul class="group-rows" {
                            @for n in rows { (grouped_row(n, selected, group, now)) }
                        }
                    }
                }
            }
        }
    }
}

/// A group header's counts: its nodes, then how many are CRIT, ATTN and OK (the script keeps
/// each `data-count` up to date).
fn group_counts(rows: &[&NodeSummary]) -> Markup {
    let count = |l: AttentionLevel| rows.iter().filter(|n| n.attention.level == l).count();
    html! {
        span class="group-counts" {
            span class="group-total" { strong data-count="total" { (rows.len()) } " " span data-plural { (if rows.len() == 1 { "node" } else { "nodes" }) } }
            span class="k-crit" { strong data-count="crit" { (count(AttentionLevel::Crit)) } " CRIT" }
            span class="k-attn" { strong data-count="attn" { (count(AttentionLevel::Attn)) } " ATTN" }
            span class="k-ok" { strong data-count="ok" { (count(AttentionLevel::Ok)) } " OK" }
        }
    }
}

/// What a grouping groups by, in words: `profile`, `site`.
fn group_words(g: &Grouping) -> &str {
    match g {
        Grouping::None => "nothing",
        Grouping::Profile => "profile",
        Grouping::Label(k) => k,
    }
}

/// Every label key the nodes have, sorted.
pub fn label_keys(nodes: &[NodeSummary]) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> =
        nodes.iter().flat_map(|n| n.labels.keys()).collect();
    keys.into_iter().cloned().collect()
}

/// The "Group by" select: a GET form (it works without script; the script applies a choice at
/// once and hides the button). It keeps the page's node, range and debug mode.
fn group_form(p: &ConsolePage) -> Markup {
    let range = p
        .node
        .as_ref()
        .map(|n| n.range)
        .filter(|r| *r != Range::Day);
    // The grouping the page shows is a choice even when no node has its label any more.
    let mut choices = groupings(&p.label_keys);
    if !choices.contains(&p.group) {
        choices.push(p.group.clone());
    }
    html! {
        form class="group-by" method="get" action="/console" data-group-form {
            @if let Some(id) = p.selected { input type="hidden" name="node" value=(id); }
            @if let Some(r) = range { input type="hidden" name="range" value=(r.name()); }
            @if p.debug { input type="hidden" name="debug" value="1"; }
            label { "Group by "
                select name="group" {
                    @for g in choices {
                        option value=(g.name()) selected[g == p.group] {
                            @match &g { Grouping::Label(k) => { "label: " (k) }, other => { (other.name()) } }
                        }
                    }
                }
            }
            " " button type="submit" { "Group" }
            @if let Some(notice) = &p.group_notice { p class="hint" role="status" data-group-notice { (notice) } }
        }
    }
}

/// The range selector: a link per range (plain links, so it works without script), the
/// current one marked `aria-current`.
pub fn range_selector(id: Uuid, current: Range) -> Markup {
    html! {
        nav class="ranges" aria-label="History range" {
            @for r in Range::ALL {
                a href={"/console?node=" (id) "&range=" (r.name())} data-range=(r.name())
                    aria-current=[(r == current).then_some("true")] { (range_label(r)) }
            }
        }
    }
}

/// A range as the selector shows it: `1 h`, `24 h`, `7 d`, `30 d`, `1 y`.
pub fn range_label(r: Range) -> &'static str {
    match r {
        Range::Hour => "1 h",
        Range::Day => "24 h",
        Range::Week => "7 d",
        Range::Month => "30 d",
        Range::Year => "1 y",
    }
}

/// The node panel's history: the range selector, then charts of load (the CPU count as a
/// reference line), memory and swap, each filesystem with its fill forecast, and checks that
/// were not OK. `h` is what the store answered: the history, none for the node, or why it
/// could not be read.
pub fn history(
    id: Uuid,
    range: Range,
    h: &Result<Option<NodeHistory>, String>,
    cpus: Option<u32>,
) -> Markup {
    html! {
        section class="history" data-range=(range.name()) aria-label="History" {
            (range_selector(id, range))
            @match h {
                Err(e) => p class="muted" { "The history could not be read: " (e) },
                Ok(None) => p class="muted" { "No history for this node yet." },
                Ok(Some(h)) => (charts(h, cpus)),
            }
        }
    }
}

/// Every chart of a history answer.
fn charts(h: &NodeHistory, cpus: Option<u32>) -> Markup {
    let frame = Frame::of(h);
    let points = |metric: &str| -> &[Point] {
        h.series
            .iter()
            .find(|s| s.metric == metric)
            .map_or(&[], |s| s.points.as_slice())
    };
    let line = |metric: &'static str, label: &str, class: &'static str| -> Option<Line<'_>> {
        let p = points(metric);
        (!p.is_empty()).then(|| Line {
            label: label.to_string(),
            class,
            points: p,
        })
    };
    let load = Chart {
        title: "Load average (1 min)".into(),
        unit: Unit::Load,
        lines: line("load1", "load 1 min", "load").into_iter().collect(),
        reference: cpus.filter(|c| *c > 0).map(|c| {
            (
                f64::from(c),
                format!("{c} CPU{}", if c == 1 { "" } else { "s" }),
            )
        }),
    };
    let memory = Chart {
        title: "Memory and swap in use".into(),
        unit: Unit::Percent,
        lines: [
            line("mem_used_pct", "memory", "mem"),
            line("swap_used_pct", "swap", "swap"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        reference: None,
    };
    // Checks in each status but OK; a status no check was in all along is left out.
    let not_ok: Vec<Line<'_>> = [
        line("checks_warn", "warn", "warn"),
        line("checks_crit", "crit", "crit"),
        line("checks_unknown", "unknown", "unknown"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let checked = !points("checks_ok").is_empty() || !not_ok.is_empty();
    let not_ok: Vec<Line<'_>> = not_ok
        .into_iter()
        .filter(|l| l.points.iter().any(|p| p.max > 0.0))
        .collect();
    let any_not_ok = !not_ok.is_empty();
    let checks = Chart {
        title: "Checks not OK".into(),
        unit: Unit::Count,
        lines: not_ok,
        reference: None,
    };
    let lines = |set: &[(&'static str, &str, &'static str)]| -> Vec<Line<'_>> {
        set.iter()
            .filter_map(|(metric, label, class)| line(metric, label, class))
            .collect()
    };
    let cpu = Chart {
        title: "CPU time".into(),
        unit: Unit::Percent,
        lines: lines(&[
            ("cpu_busy_pct", "busy", "cpu"),
            ("cpu_iowait_pct", "iowait", "iowait"),
            ("cpu_steal_pct", "steal", "steal"),
        ]),
        reference: None,
    };
    let network = Chart {
        title: "Network traffic".into(),
        unit: Unit::BytesPerSec,
        lines: lines(&[
            ("net_rx_bytes_per_s", "received", "rx"),
            ("net_tx_bytes_per_s", "sent", "tx"),
        ]),
        reference: None,
    };
    let diskio = Chart {
        title: "Disk I/O".into(),
        unit: Unit::BytesPerSec,
        lines: lines(&[
            ("diskio_read_bytes_per_s", "read", "read"),
            ("diskio_write_bytes_per_s", "written", "write"),
        ]),
        reference: None,
    };
    let temperature = Chart {
        title: "Hottest sensor".into(),
        unit: Unit::Celsius,
        lines: lines(&[("temp_max_celsius", "hottest sensor", "temp")]),
        reference: None,
    };
    let disks: Vec<(&str, &[Point])> = h
        .series
        .iter()
        .filter_map(|s| Some((s.metric.strip_prefix(DISK_PREFIX)?, s.points.as_slice())))
        .collect();
    html! {
        h4 { "Load" }
        (chart(&frame, &load))
        @if !cpu.lines.is_empty() {
            h4 { "CPU" }
            div data-chart="cpu" { (chart(&frame, &cpu)) }
        }
        h4 { "Memory" }
        (chart(&frame, &memory))
        @if !network.lines.is_empty() {
            h4 { "Network" }
            div data-chart="network" { (chart(&frame, &network)) }
        }
        @if !diskio.lines.is_empty() {
            h4 { "Disk I/O" }
            div data-chart="diskio" { (chart(&frame, &diskio)) }
        }
        @if !temperature.lines.is_empty() {
            h4 { "Temperature" }
            div data-chart="temperature" { (chart(&frame, &temperature)) }
        }
        @for (mount, points) in &disks {
            h4 { "Disk " code { (mount) } }
            div class="disk-chart" data-mount=(mount) {
                (chart(&frame, &Chart {
                    title: format!("Disk {mount} used"),
                    unit: Unit::Percent,
                    lines: vec![Line { label: format!("{mount} used"), class: "disk", points }],
                    reference: None,
                }))
                p class="forecast" { (forecast(h.forecasts.iter().find(|f| f.mount == *mount))) }
            }
        }
        h4 { "Checks" }
        @if any_not_ok {
            (chart(&frame, &checks))
        } @else if checked {
            p class="muted" data-checks-ok { "Every check was OK throughout " (range_words(h.range)) "." }
        } @else {
            p class="muted" { "No checks reported in " (range_words(h.range)) "." }
        }
    }
}

/// One line saying what an event is about: a note's text, an incident's title and severity,
/// an attention change's level and first active reason, ...
pub fn event_summary(e: &EventEnvelope) -> String {
    let text = |k: &str| {
        e.body
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    match e.kind.as_str() {
        "note" => text("text"),
        vaultmesh_proto::event::kinds::NODE_RENAMED => {
            match (text("previous").as_str(), text("display_name").as_str()) {
                ("", "") => "display name cleared".into(),
                ("", new) => format!("named “{new}”"),
                (old, "") => format!("display name “{old}” cleared: shown by its hostname"),
                (old, new) => format!("renamed “{old}” → “{new}”"),
            }
        }
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
            // The label when the event has one (recorded since labels exist), else the detail.
            fn said(r: &serde_json::Value) -> Option<&str> {
                ["label", "message"]
                    .iter()
                    .find_map(|k| r.get(*k).and_then(|m| m.as_str()).filter(|m| !m.is_empty()))
            }
            match active.and_then(said) {
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
    }
}

/// One entry of a timeline or the feed (the feed names the node).
pub fn event_item(e: &EventEnvelope, now: DateTime<Utc>, show_node: Option<&str>) -> Markup {
    html! {
        li class={"ev ev-" (e.kind)} data-event-id=(e.id) {
            span class="kind" { (e.kind) }
            @if let Some(name) = show_node { span class="node" { (name) } }
            span class="what" { (event_summary(e)) }
            span class="meta" { (e.author) " · " (ago(e.ts, now)) }
        }
    }
}

/// The global event feed.
pub fn feed(f: &Feed, now: DateTime<Utc>) -> Markup {
    html! {
        ol id="feed" class="feed" data-fragment="/console/feed" aria-label="Event feed, newest first" {
            @for e in &f.events {
                (event_item(e, now, e.node_id.and_then(|n| f.names.get(&n)).map(String::as_str)))
            }
            @if f.events.is_empty() { li class="empty" { "No events yet." } }
        }
    }
}

/// Why each node is not OK: every reason, suppressed ones marked with who held them back.
pub fn attention(nodes: &[NodeSummary], may: Grants) -> Markup {
    let needing: Vec<&NodeSummary> = nodes
        .iter()
        .filter(|n| !n.attention.reasons.is_empty())
        .collect();
    html! {
        div id="attention" data-fragment="/console/attention" {
            @if needing.is_empty() { p class="muted" { "Every node is OK." } }
            @for n in &needing {
                section class="why-node" data-node-id=(n.node_id) {
                    h3 { (pill(n.attention.level)) " " (named_link(n)) }
                    ul {
                        @for r in &n.attention.reasons {
                            li class=[r.suppressed_by.is_some().then_some("suppressed")] data-rule=(r.rule) {
                                details {
                                    summary {
                                        span class={"lvl " (level_name(r.level).0)} { (level_name(r.level).1) }
                                        " " (reason_chip(r))
                                        @if let Some(by) = &r.suppressed_by { span class="muted" { " — " (by) } }
                                    }
                                    p class="detail" { (r.message) }
                                    @if may.has(Permission::EventsWrite) { (reason_actions(n.node_id, r)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What an admin can do about one reason from the attention panel: silence it (a duration, or
/// until it clears) unless something already holds it back; for an incident, acknowledge it
/// (while open) and resolve it.
fn reason_actions(node: Uuid, r: &vaultmesh_proto::Reason) -> Markup {
    let incident = r
        .rule
        .strip_prefix("incident.")
        .and_then(|id| Uuid::parse_str(id).ok());
    html! {
        div class="forms reason-actions" {
            @if let Some(id) = incident {
                @if r.suppressed_by.is_none() {
                    (event_form(FormKind::Ack, FormTarget::Incident(id), true, html! {}, "Acknowledge"))
                }
                (event_form(FormKind::Resolve, FormTarget::Incident(id), true, html! {}, "Resolve"))
            } @else if r.suppressed_by.is_none() && r.rule != "revoked" {
                (event_form(FormKind::Silence, FormTarget::Node(node), true, html! {
                    input type="hidden" name="rule" value=(r.rule);
                    (duration_select())
                }, "Silence"))
            }
        }
    }
}

/// How long a silence lasts: the console's choices, 4 hours preselected.
fn duration_select() -> Markup {
    html! {
        select name="duration" aria-label="For how long" {
            @for (value, words) in SILENCE_CHOICES {
                option value=(value) selected[value == "4h"] { (words) }
            }
        }
    }
}

/// The findings panel: counts by severity, then the worst findings, worst first.
pub fn findings(f: &Findings) -> Markup {
    let mut rows: Vec<&(String, Uuid, Finding)> = f.rows.iter().collect();
    rows.sort_by(|a, b| b.2.severity.cmp(&a.2.severity).then(a.0.cmp(&b.0)));
    let shown = rows.len().min(FINDINGS_SHOWN);
    html! {
        div id="findings" data-fragment="/console/findings" {
            p class="sev-counts" {
                @for s in [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info] {
                    span class={"sev " (sev_class(s))} { (s.as_str()) " " strong { (f.counts.get(&s).copied().unwrap_or(0)) } }
                }
            }
            @if rows.is_empty() { p class="muted" { "No medium or worse findings in the latest scans." } }
            ul class="findings" {
                @for (host, id, finding) in rows.iter().take(shown) {
                    li { (sev_badge(finding.severity)) " " (node_link(*id, host)) ": " (finding.title) }
                }
            }
            @if rows.len() > shown { p class="muted" { "and " (rows.len() - shown) " more" } }
        }
    }
}

/// The center panel when no node is selected (an empty fleet, or a node that is gone).
pub fn no_node() -> Markup {
    html! { article id="node" { p class="muted" { "Select a node." } } }
}

/// The selected node: identity, tiles, disks, history charts, checks, latest scan, timeline, forms.
pub fn node(p: &NodePanel, now: DateTime<Utc>) -> Markup {
    let d = &p.detail;
    let s = &d.summary;
    let id = s.node_id;
    let hb = &d.latest;
    let stale = is_stale(s);
    let open_incidents: Vec<_> = d
        .incidents
        .iter()
        .filter(|i| i.state != IncidentState::Resolved)
        .collect();
    html! {
        article id="node" data-fragment={"/console/nodes/" (id) "?range=" (p.range.name())} data-node-id=(id) {
            header class="node-head" {
                h2 { (pill(s.attention.level)) " " (node_name(s)) @if s.hostname_shared { " " (shared_hostname(id)) } (revoked_mark(s)) }
                p class="muted" {
                    span class="id" { (id) } " · " (s.os_profile) " · agent " (s.agent_version.as_deref().unwrap_or("?"))
                    " · last seen " (ago(s.last_seen, now)) " · " (s.heartbeats) " heartbeats"
                }
                @if !s.labels.is_empty() {
                    p class="muted labels" { "labels: " @for (i, (k, v)) in s.labels.iter().enumerate() { @if i > 0 { ", " } span class="label" data-label=(k) { (k) ":" (v) } } }
                }
            }
            @if stale {
                p class="as-of" data-as-of { "No heartbeat since " (ago(s.last_seen, now)) ": what follows is as of then." }
            }
            div class=(if stale { "tiles stale" } else { "tiles" }) {
                div class="tile" { h4 { "Load 1m" } p { (num2(s.load1)) @if let Some(c) = s.cpu_count { span class="sub" { " / " (c) " CPU" } } } }
                div class="tile" { h4 { "Memory" } p { (pct(s.mem_used_pct)) } }
                div class="tile" { h4 { "Tunnel" } p class=(if hb.cloudflare_ok { "flag ok" } else { "flag bad" }) { (if hb.cloudflare_ok { "connected" } else { "down" }) } }
                div class="tile" { h4 { "Services" } p { (services_flag(hb.services())) } }
            }
            @if let Some(m) = &hb.metrics && !m.disks.is_empty() {
                h3 { "Disks" }
                table class="compact" {
                    thead { tr { th { "Mount" } th { "FS" } th class="num" { "Used" } } }
                    tbody { @for disk in &m.disks { tr { td { (disk.mount) } td { (disk.fs) } td class="num" { (pct(disk.used_pct())) } } } }
                }
            }
            h3 { "History" }
            (history(id, p.range, &p.history, s.cpu_count))
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
                @for c in &p.commands {
                    li class="ev ev-command" {
                        span class="kind" { "command" }
                        span class="what" {
                            (c.action) " — " span class="cmd-status" data-status=(c.status) { (c.status) }
                            @if let Some(o) = &c.outcome { ": " span class="outcome" { (o) } }
                        }
                        span class="meta" { (c.issued_by) " · " (ago(c.issued_at, now)) }
                    }
                }
                @for e in &p.events { (event_item(e, now, None)) }
            }
            @if p.may.has(Permission::EventsWrite) {
            h3 { "Act" }
            div class="forms" {
                (event_form(FormKind::Note, FormTarget::Node(id), false, html! {
                    label { "Note " input name="text" required maxlength="8192" placeholder="What did you see or do?"; }
                }, "Post note"))
                (event_form(FormKind::Incident, FormTarget::Node(id), false, html! {
                    label { "Incident " input name="title" required maxlength="256" placeholder="Title"; }
                    label { "Severity " select name="severity" {
                        option value="critical" { "critical" } option value="high" selected { "high" }
                        option value="medium" { "medium" } option value="low" { "low" }
                    } }
                }, "Open incident"))
                @for i in &open_incidents {
                    div class="incident" {
                        (sev_badge(i.severity)) " " (i.title)
                        " " span class="muted" { (format!("{:?}", i.state).to_lowercase()) }
                        @if i.state == IncidentState::Open {
                            (event_form(FormKind::Ack, FormTarget::Incident(i.id), true, html! {}, "Acknowledge"))
                        }
                        (event_form(FormKind::Resolve, FormTarget::Incident(i.id), true, html! {}, "Resolve"))
                    }
                }
                (silence_form(id, &s.attention.reasons))
                @for sil in &p.silences {
                    div class="silence" data-silence-id=(sil.id) {
                        "Silenced: " strong { (sil.rule.as_deref().unwrap_or("every rule")) }
                        @if sil.fleet_wide { " on every node" }
                        " by " (sil.by) " · "
                        @match sil.until {
                            Some(u) if !sil.until_resolved => { "until " (ago_or_until(u, now)) }
                            Some(u) => { "until resolved, at most until " (ago_or_until(u, now)) }
                            None => { "until resolved" }
                        }
                        (event_form(FormKind::Resolve, FormTarget::Incident(sil.id), true, html! {}, "End silence"))
                    }
                }
            }
            }
            @if p.may.has(Permission::CommandsIssue) { (command_forms(id, p)) }
            @if p.may.has(Permission::Admin) { (decommission_form(s, now)) }
        }
    }
}

/// The node panel's rename form (`POST /console/nodes/{id}/rename`): the display name, filled
/// with the current one; an empty name clears it (the node is shown by its hostname).
fn rename_form(s: &NodeSummary) -> Markup {
    let max = vaultmesh_proto::display_name::MAX_CHARS;
    html! {
        form method="post" action={"/console/nodes/" (s.node_id) "/rename"} data-console-form data-rename {
            label { "Display name "
                input name="display_name" value=[s.display_name.as_deref()] maxlength=(max)
                    placeholder=(s.hostname) autocomplete="off";
            }
            button type="submit" { "Rename" }
            span class="hint" { " Empty: shown by its hostname, " (s.hostname) "." }
        }
    }
}

/// The node panel's Lifecycle section: the rename form, and the decommission form — a reason
/// and the "I understand" box, which the browser requires and the server checks
/// (`confirm=yes`). A decommissioned node's panel says so, and offers neither.
fn decommission_form(s: &NodeSummary, now: DateTime<Utc>) -> Markup {
    let id = s.node_id;
    html! {
        h3 { "Lifecycle" }
        @match &s.revoked {
            Some(r) if r.decommissioned => {
                p class="hint" data-decommissioned {
                    "Decommissioned by " (r.by) " " (ago(r.at, now))
                    ": it has left the node list, attention and notifications; its history stays in the logs. "
                    @if r.readmitted { "Re-admitted: it comes back when it enrolls again." }
                    @else { "To bring it back: " code { "vaultmesh-command-center node readmit " (id) } ", then let it enroll." }
                }
            }
            _ => {
                (rename_form(s))
                form method="post" action={"/console/nodes/" (id) "/decommission"} data-console-form data-decommission {
                    label { "Reason " input name="reason" maxlength="256" placeholder="Why (optional)"; }
                    label class="confirm" {
                        input type="checkbox" name="confirm" value="yes" required;
                        " I understand: its key is refused, and it leaves the node list, attention and notifications"
                    }
                    button type="submit" { "Decommission" }
                }
            }
        }
    }
}

/// A time to come as the console says it: the instant, in UTC.
fn ago_or_until(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    if t <= now {
        return ago(t, now);
    }
    html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) } }
}

/// The node panel's silence form: one of the node's current reasons (or every rule), for how
/// long, and why.
fn silence_form(id: Uuid, reasons: &[vaultmesh_proto::Reason]) -> Markup {
    let open: Vec<&vaultmesh_proto::Reason> = reasons
        .iter()
        .filter(|r| r.suppressed_by.is_none() && r.rule != "revoked")
        .collect();
    html! {
        (event_form(FormKind::Silence, FormTarget::Node(id), false, html! {
            label { "Silence " select name="rule" {
                @for (i, r) in open.iter().enumerate() {
                    option value=(r.rule) selected[i == 0] { (r.short()) }
                }
                option value="" selected[open.is_empty()] { "every reason on this node" }
            } }
            label { "for " (duration_select()) }
            input name="text" maxlength="8192" placeholder="Why (optional)";
        }, "Silence"))
    }
}

/// The node panel's command forms: one per rule of its profile's policy, with a field per
/// argument the action takes (the policy's pattern as its hint). Says why there are none.
fn command_forms(id: Uuid, p: &NodePanel) -> Markup {
    let revoked = p.detail.summary.revoked.is_some();
    html! {
        h3 { "Commands" }
        @if !p.can_sign {
            p class="hint" { "This Command Center has no signing key (" code { "--signing-key" } "): it cannot send commands." }
        } @else if revoked {
            p class="hint" { "A revoked node fetches no commands." }
        } @else if p.allowed.is_empty() {
            p class="hint" { "The " (p.detail.summary.os_profile) " policy allows no command (no policy file for this profile)." }
        } @else {
            div class="forms commands" {
                @for a in &p.allowed {
                    form method="post" action="/console/commands" data-console-form data-action=(a.action) {
                        input type="hidden" name="node_id" value=(id);
                        input type="hidden" name="action" value=(a.action);
                        @for name in vaultmesh_proto::command::action_args(&a.action).unwrap_or_default() {
                            @let pattern = a.args.get(*name);
                            label { (name) " "
                                input name={"arg." (name)} required maxlength="256"
                                    placeholder=(pattern.map_or("", String::as_str))
                                    title=[pattern.map(|p| format!("must match {p} in full (policy)"))];
                            }
                        }
                        button type="submit" { "Run " (a.action) }
                    }
                }
            }
            p class="hint" { "Sent signed; the agent's own allow list decides too. The receipt shows in the timeline when it comes." }
        }
    }
}

/// `GET /console`: the mission bar, the node list, the selected node, and the right panel.
pub fn page(p: &ConsolePage, now: DateTime<Utc>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Mission Console · VaultMesh", "/assets/console.js"))
            body class="console" data-selected=[p.selected] data-debug=[p.debug.then_some("1")] data-since=[p.since.as_deref()] {
                header class="mission-bar" {
                    h1 { a href="/console" { "VaultMesh Mission Console" } }
                    (kpis(&p.nodes, p.last_event, &p.failing, &p.own, now))
                    @if p.may.has(Permission::Admin) { (super::tokens::add_node_link()) }
                    @if !p.may.has(Permission::EventsWrite) { p class="read-only" title="Your role lets you read the console, not act from it." { "Read only" } }
                    p id="stream-state" class="stream-state" role="status" aria-live="polite" { "connecting…" }
                    @if let Some(name) = &p.signed_in {
                        form class="sign-out" method="post" action="/auth/logout" {
                            span class="who" { (name) }
                            " "
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main class="panels" {
                    nav class="panel left" aria-label="Nodes" {
                        label class="filter" { span class="visually-hidden" { "Filter nodes" }
                            input id="filter" type="search" placeholder="Filter: host, profile:ArchVault, site:fra1" autocomplete="off";
                        }
                        (group_form(p))
                        (node_list(&p.nodes, p.selected, &p.group, now))
                    }
                    section class="panel center" aria-label="Selected node" {
                        @if let Some(n) = &p.node {
                            (node(n, now))
                        } @else if p.nodes.is_empty() {
                            article id="node" { (empty_fleet_hint(&p.hint)) }
                        } @else {
                            (no_node())
                        }
                    }
                    aside class="panel right" aria-label="Attention and events" {
                        h2 { "Attention" }
                        (attention(&p.nodes, p.may))
                        h2 { "Scan findings" }
                        (findings(&p.findings))
                        h2 { "Events" }
                        (feed(&p.feed, now))
                    }
                }
                (footer("/", "overview"))
            }
        }
    }
}
