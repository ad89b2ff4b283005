//! Fragment tests: every component and view rendered from plain data, no server, no browser.
//! The HTML is parsed (`scraper`, html5ever: a browser's parser) so assertions read what a
//! browser would see — an element's text, an attribute's whole value — not substrings.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use chrono::{DateTime, Duration, TimeZone, Utc};
use maud::Markup;
use scraper::{ElementRef, Html, Selector};
use serde_json::json;
use uuid::Uuid;
use vaultmesh_proto::api::{HistoryPoint, Incident, IncidentState, NodeRevoked};
use vaultmesh_proto::history::{DiskForecast, NodeHistory, Point, Range, Series, Unit};
use vaultmesh_proto::{
    Attention, AttentionLevel, EventEnvelope, NodeDetail, NodeHeartbeat, NodeSummary, Reason,
    ScanReport, Services, Severity,
};

use super::components::{self, Failing};
use super::forms::{CommandForm, ConsoleForm, Grouping};
use super::view::chart::{self, Chart, Frame, Line};
use super::view::console::{self, CommandLine, ConsolePage, Feed, Findings, NodePanel};
use super::view::dashboard::{self, EnrollHint};
use super::view::worst_first;
use crate::roles::{Grants, Permission, Role};

/// Markup, quotes, an entity, and a bidirectional override: what a hostile agent or operator
/// could put in a hostname, a note, a title or a finding.
const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>\" onmouseover=\"alert(3)\" 'x' &amp; \u{202e}gpj.exe";

const A: Uuid = Uuid::from_u128(0xa100_0000_0000_4000_8000_0000_0000_000a);
const B: Uuid = Uuid::from_u128(0xb200_0000_0000_4000_8000_0000_0000_000b);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

fn summary(id: Uuid, hostname: &str, level: AttentionLevel) -> NodeSummary {
    NodeSummary {
        node_id: id,
        hostname_shared: false,
        hostname: hostname.into(),
        os_profile: "ArchVault".into(),
        last_seen: now() - Duration::seconds(42),
        cloudflare_ok: true,
        services_ok: true,
        services: Services::Up,
        agent_version: Some("0.1.0".into()),
        load1: Some(0.5),
        cpu_count: Some(2),
        mem_used_pct: Some(25.0),
        disk_max_used_pct: Some(42.0),
        disk_max_mount: Some("/".into()),
        worst_check: None,
        checks_not_ok: Vec::new(),
        heartbeats: 3,
        receipt_chain_ok: None,
        attention: Attention {
            level,
            ..Attention::default()
        },
        last_scan: None,
        revoked: None,
        labels: Default::default(),
        display_name: None,
    }
}

fn reason(rule: &str, level: AttentionLevel, message: &str, by: Option<&str>) -> Reason {
    Reason {
        rule: rule.into(),
        level,
        label: message.into(),
        message: message.into(),
        suppressed_by: by.map(str::to_string),
    }
}

fn heartbeat(id: Uuid, hostname: &str) -> NodeHeartbeat {
    let mut hb = vaultmesh_testkit::heartbeat_json(&id.to_string(), hostname, 1);
    hb["checks"][0]["summary"] = json!(HOSTILE);
    serde_json::from_value(hb).unwrap()
}

fn incident(n: u128, state: IncidentState) -> Incident {
    serde_json::from_value(json!({
        "id": Uuid::from_u128(n), "node_id": A, "title": HOSTILE, "severity": "critical",
        "state": state, "opened_at": now(), "opened_by": "ops",
    }))
    .unwrap()
}

fn event(kind: &str, node: Option<Uuid>, body: serde_json::Value, refs: &[Uuid]) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
        kind: kind.into(),
        ts: now() - Duration::seconds(5),
        node_id: node,
        author: HOSTILE.into(),
        body,
        refs: refs.to_vec(),
        hash: String::new(),
    }
}

fn scan(id: Uuid, findings: &[(Severity, &str)]) -> ScanReport {
    let findings: Vec<_> = findings
        .iter()
        .map(|(s, t)| json!({"rule": "r", "severity": s, "title": t, "detail": "", "evidence": ""}))
        .collect();
    serde_json::from_value(json!({
        "scan_id": Uuid::from_u128(7), "node_id": id, "profile": "ArchVault",
        "started_at": now(), "finished_at": now(), "findings": findings, "counts": {},
        "fingerprint": {}, "rules": [],
    }))
    .unwrap()
}

fn point(load: f64, mem: f64) -> HistoryPoint {
    HistoryPoint {
        received_at: now(),
        timestamp: now(),
        cloudflare_ok: true,
        services_ok: true,
        load1: Some(load),
        mem_used_pct: Some(mem),
        disk_max_used_pct: None,
        worst_check: None,
    }
}

/// A point `ago` seconds before [`now`], its slot aligned to `res`.
fn at(ago: i64, res: i64, min: f64, avg: f64, max: f64) -> Point {
    let t = now().timestamp() - ago;
    Point {
        t: Utc.timestamp_opt(t - t.rem_euclid(res), 0).unwrap(),
        min,
        avg,
        max,
        n: 1,
    }
}

/// A history answer over `range` ending [`now`], as the store gives it.
fn history(
    range: Range,
    series: Vec<(&str, Vec<Point>)>,
    forecasts: Vec<DiskForecast>,
) -> NodeHistory {
    NodeHistory {
        node_id: A,
        range,
        from: now() - Duration::seconds(range.secs()),
        to: now(),
        tier: range.tier(),
        resolution_secs: range.resolution_secs(),
        series: series
            .into_iter()
            .map(|(metric, points)| Series {
                metric: metric.into(),
                unit: vaultmesh_proto::history::unit_of(metric).unwrap(),
                points,
            })
            .collect(),
        forecasts,
    }
}

/// `n` points of `range`'s resolution ending now, the value of each from `f(i)`.
fn run(range: Range, n: i64, f: impl Fn(i64) -> (f64, f64, f64)) -> Vec<Point> {
    let res = i64::from(range.resolution_secs());
    (0..n)
        .map(|i| {
            let (min, avg, max) = f(i);
            at((n - 1 - i) * res, res, min, avg, max)
        })
        .collect()
}

fn panel(s: NodeSummary, incidents: Vec<Incident>) -> NodePanel {
    let recent = (0..3).map(|i| point(f64::from(i), 50.0)).collect();
    NodePanel {
        detail: NodeDetail {
            latest: heartbeat(s.node_id, &s.hostname),
            summary: s,
            history: recent,
            incidents,
            latest_scan: None,
            drift: Vec::new(),
        },
        events: vec![event("note", Some(A), json!({"text": HOSTILE}), &[])],
        commands: vec![CommandLine {
            action: "agent.ping".into(),
            status: "issued".into(),
            issued_by: HOSTILE.into(),
            issued_at: now(),
            outcome: None,
        }],
        silences: Vec::new(),
        allowed: Vec::new(),
        can_sign: false,
        may: Grants::ALL,
        range: Range::Day,
        history: Ok(Some(history(
            Range::Day,
            vec![
                (
                    "load1",
                    run(Range::Day, 12, |i| (0.1, 0.2 + i as f64 / 10.0, 0.5)),
                ),
                (
                    &format!("disk_used_pct:{HOSTILE}"),
                    run(Range::Day, 12, |_| (40.0, 41.0, 42.0)),
                ),
            ],
            vec![DiskForecast {
                mount: HOSTILE.into(),
                used_pct: 42.0,
                pct_per_day: 2.0,
                days_until_full: Some(29.0),
                hours: 168,
            }],
        ))),
    }
}

/// The overview with one node.
fn overview(n: &NodeSummary) -> Html {
    parse(&dashboard::page(
        std::slice::from_ref(n),
        &EnrollHint::default(),
        now(),
    ))
}

/// Parses a fragment; a page (`<!DOCTYPE`) as a document, which must parse without errors.
fn parse(m: &Markup) -> Html {
    let text = m.clone().into_string();
    if text.starts_with("<!DOCTYPE") {
        let doc = Html::parse_document(&text);
        assert!(doc.errors.is_empty(), "{:?}", doc.errors);
        doc
    } else {
        Html::parse_fragment(&text)
    }
}

fn all<'a>(h: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    h.select(&Selector::parse(css).unwrap()).collect()
}

fn one<'a>(h: &'a Html, css: &str) -> ElementRef<'a> {
    let found = all(h, css);
    assert_eq!(found.len(), 1, "{css}: {}", h.html());
    found[0]
}

fn text(e: ElementRef<'_>) -> String {
    e.text().collect()
}

fn attr<'a>(e: ElementRef<'a>, name: &str) -> &'a str {
    e.value()
        .attr(name)
        .unwrap_or_else(|| panic!("no {name}: {}", e.html()))
}

/// Nothing the hostile string carries became markup: no script, no image, no handler.
fn inert(h: &Html) {
    assert!(all(h, "script:not([src])").is_empty(), "{}", h.html());
    assert!(
        all(h, "img, [onerror], [onmouseover]").is_empty(),
        "{}",
        h.html()
    );
}

#[test]
fn a_hostile_hostname_is_text_in_the_row_the_panel_the_attention_and_the_overview() {
    let mut n = summary(B, HOSTILE, AttentionLevel::Attn);
    n.attention.reasons = vec![reason("tunnel", AttentionLevel::Attn, HOSTILE, None)];

    let row = parse(&components::node_row(&n, None, now()));
    inert(&row);
    let li = one(&row, "li[data-node-id]");
    assert_eq!(attr(li, "data-name"), HOSTILE);
    assert_eq!(
        attr(li, "data-search"),
        format!("{} archvault profile:archvault", HOSTILE.to_lowercase())
    );
    assert_eq!(text(one(&row, ".name")), HOSTILE);
    assert_eq!(text(one(&row, "[data-why]")), HOSTILE);
    // The bidi override stays inside its element: the profile after it is still the profile.
    assert_eq!(text(one(&row, ".profile")), "ArchVault");

    let node = parse(&console::node(
        &panel(n.clone(), vec![incident(1, IncidentState::Open)]),
        now(),
    ));
    inert(&node);
    assert_eq!(text(one(&node, "h2")), format!("ATTN {HOSTILE}"));
    assert_eq!(text(one(&node, ".checks span:not(.pill)")), HOSTILE);
    assert_eq!(text(one(&node, ".ev-note .what")), HOSTILE);
    assert_eq!(
        text(one(&node, ".ev-note .meta")),
        format!("{HOSTILE} · 5s ago")
    );
    assert_eq!(
        text(one(&node, ".ev-command .meta")),
        format!("{HOSTILE} · just now")
    );
    assert!(text(one(&node, ".incident")).starts_with(&format!("critical {HOSTILE} open")));
    // A mount name comes from the agent too: text in the heading, the chart's title and legend.
    assert_eq!(text(one(&node, ".history h4 code")), HOSTILE);
    assert_eq!(attr(one(&node, ".disk-chart"), "data-mount"), HOSTILE);
    assert_eq!(
        text(one(&node, ".disk-chart svg title")),
        format!("Disk {HOSTILE} used, the last 24 hours")
    );
    assert!(text(one(&node, ".disk-chart figcaption")).contains(&format!("{HOSTILE} used")));

    let why = parse(&console::attention(std::slice::from_ref(&n), Grants::ALL));
    inert(&why);
    assert_eq!(text(one(&why, "h3 a")), HOSTILE);
    assert_eq!(text(one(&why, "li summary")), format!("ATTN {HOSTILE}"));
    assert_eq!(text(one(&why, "li .detail")), HOSTILE);
    assert_eq!(attr(one(&why, "li .reason"), "title"), HOSTILE);

    let table = overview(&n);
    inert(&table);
    assert_eq!(text(one(&table, ".host")), HOSTILE);
    assert_eq!(text(one(&table, ".why")), format!("{HOSTILE} "));
    assert_eq!(attr(one(&table, ".why .reason"), "title"), HOSTILE);
}

#[test]
fn hostile_event_text_finding_titles_and_notifier_errors_are_text() {
    let mut f = Findings::default();
    f.add(HOSTILE, B, &scan(B, &[(Severity::High, HOSTILE)]));
    let h = parse(&console::findings(&f));
    inert(&h);
    assert_eq!(
        text(one(&h, ".findings li")),
        format!("high {HOSTILE}: {HOSTILE}")
    );

    let feed = Feed {
        events: vec![event("incident", Some(B), json!({"title": HOSTILE}), &[])],
        names: [(B, HOSTILE.to_string())].into(),
    };
    let h = parse(&console::feed(&feed, now()));
    inert(&h);
    assert_eq!(text(one(&h, ".node")), HOSTILE);
    assert_eq!(text(one(&h, ".what")), format!("{HOSTILE} (high)"));

    let failing = [Failing {
        name: HOSTILE.into(),
        since: Some(now() - Duration::minutes(5)),
        error: Some(HOSTILE.into()),
        pending: 3,
    }];
    let h = parse(&console::kpis(
        &[],
        None,
        &failing,
        &Attention::default(),
        now(),
    ));
    inert(&h);
    let banner = one(&h, ".k-notify");
    assert_eq!(attr(banner, "data-notifier"), HOSTILE);
    assert_eq!(
        text(banner),
        format!("notifier {HOSTILE} failing since 5m ago ({HOSTILE}) — 3 waiting")
    );
}

#[test]
fn an_empty_fleet_says_so_in_every_panel_and_the_overview_says_how_to_start() {
    let h = parse(&console::node_list(&[], None, &Grouping::None, now()));
    assert_eq!(
        text(one(&h, "li.empty")),
        "No nodes have reported yet. Add node"
    );
    assert_eq!(
        attr(one(&h, "li.empty a[data-add-node]"), "href"),
        "/console/add-node"
    );
    let h = parse(&console::kpis(&[], None, &[], &Attention::default(), now()));
    for k in ["total", "ok", "attn", "crit"] {
        assert_eq!(text(one(&h, &format!("[data-kpi={k}]"))), "0", "{k}");
    }
    assert_eq!(text(one(&h, "#last-event")), "—");
    assert!(all(&h, "[role=alert]").is_empty());
    let h = parse(&console::attention(&[], Grants::ALL));
    assert_eq!(text(one(&h, "p.muted")), "Every node is OK.");
    let h = parse(&console::findings(&Findings::default()));
    assert_eq!(
        text(one(&h, "p.muted")),
        "No medium or worse findings in the latest scans."
    );
    assert!(all(&h, ".findings li").is_empty());
    let h = parse(&console::feed(&Feed::default(), now()));
    assert_eq!(text(one(&h, "li.empty")), "No events yet.");

    let page = parse(&console::page(&ConsolePage::default(), now()));
    // The center says how to add a node, as the overview does.
    assert!(text(one(&page, "#node .empty")).starts_with("No nodes have reported yet."));
    assert!(text(one(&page, "#node pre code")).contains("vaultmesh-node-agent run"));
    // A fleet with no node selected (a node that is gone): the center asks for one.
    let some = ConsolePage {
        signed_in: None,
        nodes: vec![summary(A, "alpha", AttentionLevel::Ok)],
        ..ConsolePage::default()
    };
    assert_eq!(
        text(one(&parse(&console::page(&some, now())), "#node")),
        "Select a node."
    );
    assert_eq!(one(&page, "body").value().attr("data-selected"), None);
    assert_eq!(one(&page, "body").value().attr("data-debug"), None);

    // Without a token or a key, the overview says what is missing; the token is never shown.
    let bare = parse(&dashboard::page(&[], &EnrollHint::default(), now()));
    assert_eq!(all(&bare, "p.warn").len(), 2);
    assert_eq!(
        attr(one(&bare, "a[data-add-node]"), "href"),
        "/console/add-node",
        "the overview says where to mint a token"
    );
    assert!(text(one(&bare, "pre code")).contains("VAULTMESH_CC_PUBKEY=<its public key>"));
    let hint = EnrollHint {
        public_key: Some("PUBKEY64".into()),
        has_tokens: true,
    };
    let ready = parse(&dashboard::page(&[], &hint, now()));
    assert!(all(&ready, "p.warn").is_empty());
    assert!(text(one(&ready, "pre code")).contains("VAULTMESH_CC_PUBKEY=PUBKEY64 "));
    assert!(all(&ready, "table").is_empty());
}

/// A reason with its label.
fn labelled(rule: &str, level: AttentionLevel, label: &str, message: &str) -> Reason {
    Reason {
        label: label.into(),
        ..reason(rule, level, message, None)
    }
}

/// A 160-character raw error, as a check reports it.
const RAW: &str = "cloudflared metrics unreachable at http://127.0.0.1:20241/ready: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)";

/// A CRIT node whose first reason is held back by an acknowledgement.
fn crit_node() -> NodeSummary {
    let mut n = summary(A, "alpha", AttentionLevel::Crit);
    n.attention.reasons = vec![
        Reason {
            suppressed_by: Some("acknowledged by ops".into()),
            ..labelled(
                "incident.1",
                AttentionLevel::Crit,
                "Incident: held back",
                "open incident (high): held back",
            )
        },
        labelled(
            "stale",
            AttentionLevel::Crit,
            "Stale 10m",
            "no heartbeat for 10m",
        ),
        labelled(
            "tunnel",
            AttentionLevel::Attn,
            "Tunnel down",
            &format!("Cloudflare Tunnel is down: {RAW}"),
        ),
    ];
    n
}

#[test]
fn reasons_read_as_labels_with_the_raw_detail_only_on_demand() {
    let n = crit_node();
    let chips = |h: &Html| -> Vec<(String, String)> {
        all(h, ".reason")
            .into_iter()
            .map(|c| (text(c), attr(c, "title").to_string()))
            .collect()
    };
    // The list row: the first active label, the detail in its title, how many more.
    let h = parse(&components::node_row(&n, None, now()));
    assert_eq!(text(one(&h, "[data-why]")), "Stale 10m +1");
    assert_eq!(
        chips(&h),
        [("Stale 10m".into(), "no heartbeat for 10m".into())]
    );
    // The overview row: the pill, every label (the held-back one marked), the host a link to
    // the node in the console; the raw error only in a title.
    let h = overview(&n);
    let shown = chips(&h);
    assert_eq!(
        shown.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["Incident: held back", "Stale 10m", "Tunnel down"]
    );
    assert_eq!(
        shown[0].1,
        "open incident (high): held back (acknowledged by ops)"
    );
    assert_eq!(all(&h, ".reason[data-suppressed]").len(), 1);
    assert!(!text(one(&h, "tbody tr")).contains("cloudflared metrics"));
    assert!(shown[2].1.ends_with(RAW));
    let link = one(&h, ".host a");
    assert_eq!(
        (attr(link, "href"), text(link).as_str()),
        (format!("/console?node={A}").as_str(), "alpha")
    );
    // The attention panel: each reason a label one can open for the raw detail.
    let h = parse(&console::attention(std::slice::from_ref(&n), Grants::ALL));
    let details = all(&h, "li details");
    assert_eq!(details.len(), 3);
    assert!(text(*all(&h, "li details summary").last().unwrap()).contains("Tunnel down"));
    assert!(!text(*all(&h, "li details summary").last().unwrap()).contains("cloudflared metrics"));
    assert_eq!(
        text(*all(&h, "li details p.detail").last().unwrap()),
        format!("Cloudflare Tunnel is down: {RAW}")
    );
    // A reason recorded before labels reads as its rule, never as nothing.
    let old = reason("check.disk", AttentionLevel::Attn, "/ is 91% full", None);
    let old = Reason {
        label: String::new(),
        ..old
    };
    let h = parse(&components::reason_chip(&old));
    assert_eq!(chips(&h), [("check.disk".into(), "/ is 91% full".into())]);
}

#[test]
fn a_stale_node_shows_its_last_values_greyed_as_of_then() {
    let mut n = summary(A, "alpha", AttentionLevel::Crit);
    let h = parse(&console::node(&panel(n.clone(), Vec::new()), now()));
    assert!(all(&h, "[data-as-of]").is_empty());
    assert_eq!(attr(one(&h, ".tiles"), "class"), "tiles");
    assert!(all(&overview(&n), "tr.stale").is_empty());

    n.attention.reasons = vec![labelled(
        "stale",
        AttentionLevel::Crit,
        "Stale 5m",
        "no heartbeat for 5m",
    )];
    let h = parse(&console::node(&panel(n.clone(), Vec::new()), now()));
    assert_eq!(attr(one(&h, ".tiles"), "class"), "tiles stale");
    assert!(
        text(one(&h, "[data-as-of]")).starts_with("No heartbeat since 42s ago"),
        "{}",
        text(one(&h, "[data-as-of]"))
    );
    let h = overview(&n);
    assert_eq!(
        all(&h, "tr.stale td.was").len(),
        5,
        "tunnel, services, load, memory, disk greyed"
    );
    assert_eq!(
        text(one(&h, "td[data-label='Last seen'] .sub")),
        "values as of then"
    );
}

#[test]
fn a_crit_node_is_red_says_crit_and_shows_its_first_active_reason() {
    let n = crit_node();
    let h = parse(&components::node_row(&n, Some(A), now()));
    let li = one(&h, "li");
    assert_eq!(attr(li, "data-level"), "crit");
    assert_eq!(attr(li, "class"), "selected");
    assert_eq!(attr(one(&h, "a"), "aria-current"), "true");
    let pill = one(&h, "[data-pill]");
    assert_eq!(
        (attr(pill, "class"), text(pill).as_str()),
        ("pill crit", "CRIT")
    );
    assert_eq!(text(one(&h, "[data-why]")), "Stale 10m +1");
    assert_eq!(text(one(&h, ".seen time")), "42s ago");

    let h = parse(&console::kpis(
        std::slice::from_ref(&n),
        Some(now()),
        &[],
        &Attention::default(),
        now(),
    ));
    assert_eq!(text(one(&h, "[data-kpi=crit]")), "1");
    assert_eq!(text(one(&h, "[data-kpi=ok]")), "0");

    // The attention panel lists every reason; the held-back one is marked with who held it.
    let h = parse(&console::attention(std::slice::from_ref(&n), Grants::ALL));
    let items = all(&h, "li");
    assert_eq!(items.len(), 3);
    assert_eq!(attr(items[0], "class"), "suppressed");
    assert_eq!(
        text(one(&h, "li.suppressed summary")),
        "CRIT Incident: held back — acknowledged by ops"
    );
    assert_eq!(items[2].value().attr("class"), None);

    // The overview shows suppressed reasons too, marked.
    let h = overview(&n);
    assert_eq!(
        text(one(&h, ".why")),
        "Incident: held back Stale 10m Tunnel down "
    );
    assert_eq!(text(one(&h, "[data-pill]")), "CRIT");
}

#[test]
fn a_revoked_node_is_marked_in_the_list_the_panel_and_the_overview() {
    let mut n = summary(A, "alpha", AttentionLevel::Ok);
    n.revoked = Some(NodeRevoked {
        at: now(),
        by: "admin@example.com".into(),
        readmitted: false,
        decommissioned: false,
    });
    let h = parse(&components::node_row(&n, None, now()));
    let mark = one(&h, "[data-revoked]");
    assert_eq!(text(mark), "revoked");
    assert_eq!(
        attr(mark, "title"),
        "Revoked by admin@example.com; its requests are refused"
    );
    let h = parse(&console::node(&panel(n.clone(), Vec::new()), now()));
    assert_eq!(text(one(&h, "h2 [data-revoked]")), "revoked");
    let h = overview(&n);
    assert_eq!(text(one(&h, "[data-revoked]")), "revoked");

    n.revoked.as_mut().unwrap().readmitted = true;
    let h = parse(&components::node_row(&n, None, now()));
    assert_eq!(text(one(&h, "[data-revoked]")), "revoked · re-admitted");

    n.revoked = None;
    let h = parse(&components::node_row(&n, None, now()));
    assert!(all(&h, "[data-revoked]").is_empty());
}

#[test]
fn two_nodes_with_one_hostname_are_told_apart_by_their_ids() {
    let mut n = summary(A, "twin", AttentionLevel::Ok);
    n.hostname_shared = true;
    let h = parse(&components::node_row(&n, None, now()));
    assert_eq!(text(one(&h, ".dup")), "same name · a1000000");
    let h = parse(&console::node(&panel(n.clone(), Vec::new()), now()));
    assert_eq!(text(one(&h, "h2 .dup")), "same name · a1000000");
    let h = overview(&n);
    assert_eq!(text(one(&h, ".dup")), "same name · a1000000");
}

#[test]
fn the_storage_banner_comes_first_in_the_mission_bar_then_failing_notifiers() {
    let own = Attention {
        level: AttentionLevel::Crit,
        reasons: vec![labelled(
            "cc.storage",
            AttentionLevel::Crit,
            "Logs refuse writes",
            "the logs refuse writes: no space left on device",
        )],
        since: None,
    };
    let failing = [Failing {
        name: "pager".into(),
        ..Failing::default()
    }];
    let h = parse(&console::kpis(&[], None, &failing, &own, now()));
    let kpis = one(&h, "#kpis");
    let first = kpis.child_elements().next().unwrap();
    assert_eq!(attr(first, "class"), "k-cc crit");
    assert_eq!(attr(first, "role"), "alert");
    assert_eq!(attr(first, "data-cc-rule"), "cc.storage");
    assert_eq!(
        text(first),
        "Command Center: Logs refuse writes — the logs refuse writes: no space left on device"
    );
    let second = kpis.child_elements().nth(1).unwrap();
    assert_eq!(text(second), "notifier pager failing — 0 waiting");

    // A filling disk is an amber banner.
    let own = Attention {
        level: AttentionLevel::Attn,
        reasons: vec![reason(
            "cc.disk_free",
            AttentionLevel::Attn,
            "8% free",
            None,
        )],
        since: None,
    };
    let h = parse(&console::kpis(&[], None, &[], &own, now()));
    assert_eq!(attr(one(&h, "[data-cc-rule]"), "class"), "k-cc attn");
}

#[test]
fn every_form_of_the_node_panel_is_one_the_form_handler_accepts() {
    let p = panel(
        summary(A, "alpha", AttentionLevel::Crit),
        vec![
            incident(1, IncidentState::Open),
            incident(2, IncidentState::Acknowledged),
            incident(3, IncidentState::Resolved),
        ],
    );
    let h = parse(&console::node(&p, now()));
    let forms = all(&h, "form[data-console-form][action='/console/events']");
    let mut kinds = Vec::new();
    for form in &forms {
        assert_eq!(attr(*form, "method"), "post");
        // What the browser would post: every named field, a required empty one filled in.
        let mut fields = serde_json::Map::new();
        for input in form.select(&Selector::parse("input[name], select[name]").unwrap()) {
            let name = attr(input, "name");
            let value = match input.value().name() {
                "select" => attr(
                    input
                        .select(&Selector::parse("option[selected]").unwrap())
                        .next()
                        .unwrap(),
                    "value",
                ),
                _ => input.value().attr("value").unwrap_or("typed by an admin"),
            };
            fields.insert(name.into(), json!(value));
        }
        let f: ConsoleForm = serde_json::from_value(fields.into()).unwrap();
        kinds.push((f.kind.clone(), f.node_id.clone(), f.refs.clone()));
        let (event, author) = f.into_event("console".into(), now()).unwrap();
        assert_eq!(author, "console");
        assert_eq!(event.node_id.is_some(), event.refs.is_empty(), "{event:?}");
    }
    let id = |n: u128| Some(Uuid::from_u128(n).to_string());
    assert_eq!(
        kinds,
        [
            ("note".into(), Some(A.to_string()), None),
            ("incident".into(), Some(A.to_string()), None),
            ("ack".into(), None, id(1)),
            ("resolve".into(), None, id(1)),
            ("resolve".into(), None, id(2)),
            ("silence".into(), Some(A.to_string()), None),
        ],
        "ack only for an open incident; nothing for a resolved one"
    );
}

/// What a browser would post for `form`: every named field, a required empty one filled in,
/// a select's selected option.
fn posted(form: ElementRef<'_>) -> Vec<(String, String)> {
    form.select(&Selector::parse("input[name], select[name]").unwrap())
        .map(|input| {
            let value = match input.value().name() {
                "select" => attr(
                    input
                        .select(&Selector::parse("option[selected]").unwrap())
                        .next()
                        .unwrap(),
                    "value",
                ),
                _ => match input.value().attr("value") {
                    Some(v) => v,
                    None if input.value().attr("required").is_some() => "typed.service",
                    None => "",
                },
            };
            (attr(input, "name").to_string(), value.to_string())
        })
        .collect()
}

#[test]
fn the_node_panel_offers_a_silence_for_its_reasons_and_only_the_commands_its_policy_allows() {
    let mut s = summary(A, "alpha", AttentionLevel::Crit);
    s.attention.reasons = vec![
        labelled(
            "stale",
            AttentionLevel::Crit,
            "Stale 5m",
            "no heartbeat for 5m",
        ),
        labelled(
            "tunnel",
            AttentionLevel::Attn,
            "Tunnel down",
            "Cloudflare Tunnel is down",
        ),
        Reason {
            suppressed_by: Some("silenced by ops until resolved".into()),
            ..labelled("drift", AttentionLevel::Attn, "Drift: 1 change", "…")
        },
    ];
    let mut p = panel(s, Vec::new());
    // The silence form offers the reasons not held back, then every rule.
    let h = parse(&console::node(&p, now()));
    let silence = one(&h, "form:has(input[name=kind][value=silence])");
    let options: Vec<(String, String)> = silence
        .select(&Selector::parse("select[name=rule] option").unwrap())
        .map(|o| (attr(o, "value").to_string(), text(o)))
        .collect();
    assert_eq!(
        options,
        [
            ("stale".into(), "Stale 5m".into()),
            ("tunnel".into(), "Tunnel down".into()),
            (String::new(), "every reason on this node".into())
        ]
    );
    let f: ConsoleForm =
        serde_urlencoded::from_str(&serde_urlencoded::to_string(posted(silence)).unwrap()).unwrap();
    let (e, _) = f.into_event("ops".into(), now()).unwrap();
    assert_eq!(
        e.body,
        json!({"rule": "stale", "until": "2026-12-01T16:00:00Z"}),
        "4 hours by default"
    );
    // No key: no command forms, and it says why.
    assert!(all(&h, "form[action='/console/commands']").is_empty());
    assert!(
        all(&h, "p.hint")
            .into_iter()
            .any(|p| text(p).contains("has no signing key")),
        "says why there are no command forms"
    );
    // A key and a policy: one form per rule, the action's fields, the pattern as the hint.
    p.can_sign = true;
    p.allowed = vec![
        console::AllowedAction {
            action: "agent.ping".into(),
            args: Default::default(),
        },
        console::AllowedAction {
            action: "service.status".into(),
            args: [("unit".to_string(), "[a-z]+\\.service".to_string())].into(),
        },
    ];
    let h = parse(&console::node(&p, now()));
    let forms = all(&h, "form[action='/console/commands']");
    assert_eq!(forms.len(), 2);
    let unit = one(
        &h,
        "form[data-action='service.status'] input[name='arg.unit']",
    );
    assert_eq!(attr(unit, "placeholder"), "[a-z]+\\.service");
    assert!(unit.value().attr("required").is_some());
    for form in forms {
        let c = CommandForm::parse(posted(form)).unwrap();
        assert_eq!(c.node_id, A);
    }
    // An active silence can be ended from the panel.
    p.silences = vec![console::SilenceLine {
        id: Uuid::from_u128(7),
        fleet_wide: false,
        rule: Some("drift".into()),
        until: None,
        until_resolved: true,
        by: HOSTILE.into(),
    }];
    let h = parse(&console::node(&p, now()));
    inert(&h);
    let sil = one(&h, "[data-silence-id]");
    assert!(text(sil).starts_with(&format!("Silenced: drift by {HOSTILE} · until resolved")));
    let fields: serde_json::Map<_, _> = posted(one(&h, "[data-silence-id] form"))
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    assert_eq!(fields["kind"], "resolve");
    assert_eq!(fields["refs"], Uuid::from_u128(7).to_string());
}

#[test]
fn the_attention_panel_silences_a_reason_and_acks_and_resolves_an_incident() {
    let inc = Uuid::from_u128(9);
    let mut n = summary(A, "alpha", AttentionLevel::Crit);
    n.attention.reasons = vec![
        labelled(
            &format!("incident.{inc}"),
            AttentionLevel::Crit,
            "Incident: disk",
            "open incident (high): disk",
        ),
        labelled(
            "tunnel",
            AttentionLevel::Attn,
            "Tunnel down",
            "Cloudflare Tunnel is down",
        ),
        Reason {
            suppressed_by: Some("silenced by ops until resolved".into()),
            ..labelled("drift", AttentionLevel::Attn, "Drift: 1 change", "…")
        },
    ];
    let h = parse(&console::attention(std::slice::from_ref(&n), Grants::ALL));
    let forms_of = |rule: &str| -> Vec<serde_json::Map<String, serde_json::Value>> {
        all(&h, &format!("li[data-rule='{rule}'] form"))
            .into_iter()
            .map(|f| {
                assert_eq!(attr(f, "action"), "/console/events");
                posted(f).into_iter().map(|(k, v)| (k, json!(v))).collect()
            })
            .collect()
    };
    let incident = forms_of(&format!("incident.{inc}"));
    assert_eq!(
        incident
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ack", "resolve"]
    );
    assert!(incident.iter().all(|f| f["refs"] == inc.to_string()));
    let tunnel = forms_of("tunnel");
    assert_eq!(tunnel.len(), 1);
    assert_eq!(
        (
            tunnel[0]["kind"].as_str(),
            tunnel[0]["rule"].as_str(),
            tunnel[0]["node_id"].as_str()
        ),
        (
            Some("silence"),
            Some("tunnel"),
            Some(A.to_string().as_str())
        )
    );
    for f in incident.into_iter().chain(tunnel) {
        let f: ConsoleForm = serde_json::from_value(f.into()).unwrap();
        f.into_event("ops".into(), now()).unwrap();
    }
    assert!(
        forms_of("drift").is_empty(),
        "a reason already held back offers nothing"
    );
}

#[test]
fn each_event_kind_reads_as_one_line() {
    let inc = Uuid::from_u128(0x0193_aaaa_bbbb_7000_8000_0000_0000_0001);
    for (kind, body, refs, want) in [
        ("note", json!({"text": "rebooted"}), vec![], "rebooted"),
        ("incident", json!({"title": "disk"}), vec![], "disk (high)"),
        (
            "incident",
            json!({"title": "disk", "severity": "low"}),
            vec![],
            "disk (low)",
        ),
        ("ack", json!(null), vec![inc], "acknowledged 0193aaaa"),
        ("ack", json!({"text": "on it"}), vec![inc], "on it"),
        ("resolve", json!(null), vec![], "resolved"),
        (
            "tag",
            json!({"label": "env", "value": "prod"}),
            vec![],
            "env prod",
        ),
        (
            "silence",
            json!({"text": "maintenance"}),
            vec![],
            "all rules maintenance",
        ),
        (
            "silence",
            json!({"rule": "drift", "text": "x"}),
            vec![],
            "drift x",
        ),
        (
            "attention",
            json!({"level": "crit", "reasons": [
                {"message": "held", "suppressed_by": "silence"},
                {"message": "stale", "suppressed_by": null}]}),
            vec![],
            "CRIT: stale",
        ),
        (
            "attention",
            json!({"level": "ok", "reasons": []}),
            vec![],
            "OK: all clear",
        ),
        (
            "attention",
            json!({"level": "attn", "reasons": [{"message": "held", "suppressed_by": "x"}]}),
            vec![],
            "ATTN: 1 reason(s) held back",
        ),
        ("node_revoked", json!({"key_id": "k"}), vec![], ""),
    ] {
        let e = event(kind, None, body, &refs);
        assert_eq!(console::event_summary(&e), want, "{kind}");
        let h = parse(&console::event_item(&e, now(), None));
        assert_eq!(attr(one(&h, "li"), "class"), format!("ev ev-{kind}"));
        assert!(
            all(&h, ".node").is_empty(),
            "the timeline does not name the node"
        );
    }
}

#[test]
fn findings_are_counted_by_severity_and_the_worst_listed_first_with_bounded_memory() {
    let mut f = Findings::default();
    f.add(
        "beta",
        B,
        &scan(
            B,
            &[
                (Severity::Medium, "m"),
                (Severity::Low, "l"),
                (Severity::Info, "i"),
            ],
        ),
    );
    f.add(
        "alpha",
        A,
        &scan(A, &[(Severity::Medium, "m"), (Severity::Critical, "c")]),
    );
    let h = parse(&console::findings(&f));
    let counts: Vec<String> = all(&h, ".sev-counts .sev").into_iter().map(text).collect();
    assert_eq!(
        counts,
        ["critical 1", "high 0", "medium 2", "low 1", "info 1"]
    );
    let rows: Vec<String> = all(&h, ".findings li").into_iter().map(text).collect();
    assert_eq!(
        rows,
        ["critical alpha: c", "medium alpha: m", "medium beta: m"]
    );
    assert_eq!(
        attr(one(&h, ".findings li:first-child a[href]"), "href"),
        format!("/console?node={A}")
    );

    // 600 findings: all counted, the worst 100 kept, 50 listed.
    let many: Vec<(Severity, &str)> = (0..600)
        .map(|i| {
            (
                if i == 599 {
                    Severity::Critical
                } else {
                    Severity::Medium
                },
                "f",
            )
        })
        .collect();
    let mut f = Findings::default();
    f.add("gamma", A, &scan(A, &many));
    let h = parse(&console::findings(&f));
    assert_eq!(text(all(&h, ".sev-counts .sev")[2]), "medium 599");
    assert_eq!(all(&h, ".findings li").len(), 50);
    assert_eq!(text(one(&h, ".findings li:first-child .sev")), "critical");
    assert_eq!(text(one(&h, "#findings > p.muted")), "and 50 more");
}

/// Every coordinate of a path's `d` (`M1,2L3,4Z...`), as (x, y).
fn coords(d: &str) -> Vec<(f64, f64)> {
    d.split(['M', 'L', 'Z'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// Renders one chart of `lines` (a load chart with a reference, unless `unit` says otherwise).
fn draw(
    h: &NodeHistory,
    unit: Unit,
    lines: Vec<Line<'_>>,
    reference: Option<(f64, String)>,
) -> Html {
    parse(&chart::chart(
        &Frame::of(h),
        &Chart {
            title: "Load average (1 min)".into(),
            unit,
            lines,
            reference,
        },
    ))
}

fn load_line(points: &[Point]) -> Vec<Line<'_>> {
    vec![Line {
        label: "load 1 min".into(),
        class: "load",
        points,
    }]
}

fn labels(h: &Html, css: &str) -> Vec<String> {
    all(h, css).into_iter().map(text).collect()
}

#[test]
fn the_time_axis_shows_times_for_hours_dates_for_days_and_says_utc() {
    // now() is 2026-12-01 12:00 UTC.
    let cases: [(Range, &[&str]); 5] = [
        (
            Range::Hour,
            &[
                "11:00", "11:10", "11:20", "11:30", "11:40", "11:50", "12:00",
            ],
        ),
        (
            Range::Day,
            &[
                "12:00", "15:00", "18:00", "21:00", "00:00", "03:00", "06:00", "09:00", "12:00",
            ],
        ),
        (
            Range::Week,
            &[
                "Nov 25", "Nov 26", "Nov 27", "Nov 28", "Nov 29", "Nov 30", "Dec 1",
            ],
        ),
        (
            Range::Month,
            &["Nov 3", "Nov 8", "Nov 13", "Nov 18", "Nov 23", "Nov 28"],
        ),
        (
            Range::Year,
            &[
                "Jan 2026", "Mar 2026", "May 2026", "Jul 2026", "Sep 2026", "Nov 2026",
            ],
        ),
    ];
    for (range, want) in cases {
        let points = run(range, 3, |_| (0.5, 0.5, 0.5));
        let h = draw(
            &history(range, Vec::new(), Vec::new()),
            Unit::Load,
            load_line(&points),
            None,
        );
        assert_eq!(labels(&h, ".axis.x text:not(.utc)"), want, "{range:?}");
        assert_eq!(text(one(&h, ".axis.x .utc")), "UTC");
        // One vertical gridline per label, each inside the plot.
        let grid = all(&h, ".grid line.t");
        assert_eq!(grid.len(), want.len(), "{range:?}");
        for l in grid {
            let x: f64 = attr(l, "x1").parse().unwrap();
            assert!((0.0..=chart::W).contains(&x), "{range:?}: {x}");
        }
        let times: Vec<&str> = all(&h, ".axis.x text[data-t]")
            .into_iter()
            .map(|t| attr(t, "data-t"))
            .collect();
        assert!(times.iter().all(|t| t.ends_with("+00:00")), "{times:?}");
    }
}

#[test]
fn value_axes_have_units_round_steps_and_grow_to_the_data() {
    for (unit, highest, top, step) in [
        (Unit::Percent, 42.0, 100.0, 25.0),
        (Unit::Percent, 130.0, 150.0, 50.0),
        (Unit::Load, 0.2, 1.0, 0.25),
        (Unit::Load, 8.0, 8.0, 2.0),
        (Unit::Load, 9.1, 10.0, 2.5),
        (Unit::Load, 63.0, 80.0, 20.0),
        (Unit::Count, 0.0, 1.0, 1.0),
        (Unit::Count, 3.0, 3.0, 1.0),
        (Unit::Count, 12.0, 15.0, 5.0),
    ] {
        assert_eq!(
            chart::value_scale(unit, highest),
            (top, step),
            "{unit:?} {highest}"
        );
    }
    let points = run(Range::Day, 3, |_| (20.0, 30.0, 40.0));
    let h = draw(
        &history(Range::Day, Vec::new(), Vec::new()),
        Unit::Percent,
        load_line(&points),
        None,
    );
    assert_eq!(
        labels(&h, ".axis.y text:not(.unit)"),
        ["0%", "25%", "50%", "75%", "100%"]
    );
    assert_eq!(text(one(&h, ".axis.y .unit")), "% used");
    assert_eq!(
        all(&h, ".grid line:not(.t)").len(),
        5,
        "a gridline per value label"
    );
    let h = draw(
        &history(Range::Day, Vec::new(), Vec::new()),
        Unit::Load,
        load_line(&points),
        None,
    );
    assert_eq!(text(one(&h, ".axis.y .unit")), "load");
}

#[test]
fn load_above_twice_the_cpus_is_drawn_whole_with_the_cpus_as_a_reference_line() {
    // The old chart cut load per CPU at 2: load 8 on 2 CPUs was drawn as 4.
    let points = run(Range::Hour, 4, |i| {
        if i == 2 {
            (8.0, 8.0, 8.0)
        } else {
            (0.5, 0.5, 0.5)
        }
    });
    let h = draw(
        &history(Range::Hour, Vec::new(), Vec::new()),
        Unit::Load,
        load_line(&points),
        Some((2.0, "2 CPUs".into())),
    );
    assert_eq!(attr(one(&h, "svg"), "data-top"), "8");
    assert_eq!(
        labels(&h, ".axis.y text:not(.unit)"),
        ["0", "2", "4", "6", "8"]
    );
    let line = coords(attr(one(&h, "path.line"), "d"));
    assert_eq!(line.len(), 4);
    let ys: Vec<f64> = line.iter().map(|p| p.1).collect();
    let peak = ys.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(peak, ys[2], "the peak is the highest point drawn");
    let top_label = all(&h, ".axis.y text:not(.unit)")
        .into_iter()
        .last()
        .unwrap();
    let label_y: f64 = attr(top_label, "y").parse().unwrap();
    assert!(
        (label_y - 3.5 - peak).abs() < 0.05,
        "the peak sits on the 8 gridline: {peak} vs {label_y}"
    );
    for (x, y) in &line {
        assert!(
            (0.0..=chart::W).contains(x) && (0.0..=chart::H).contains(y),
            "{x},{y} is inside the viewBox"
        );
    }
    assert_eq!(text(one(&h, ".ref-label")), "2 CPUs");
    let reference: f64 = attr(one(&h, "line.ref"), "y1").parse().unwrap();
    assert!(
        reference > peak && reference < ys[0],
        "the CPU line is between: {reference}"
    );
    // The reference raises the scale when the load stays below it.
    let calm = run(Range::Hour, 4, |_| (0.5, 0.5, 0.5));
    let h = draw(
        &history(Range::Hour, Vec::new(), Vec::new()),
        Unit::Load,
        load_line(&calm),
        Some((16.0, "16 CPUs".into())),
    );
    assert_eq!(
        attr(one(&h, "svg"), "data-top"),
        "20",
        "16 CPUs: 0 to 20 in steps of 5"
    );
}

#[test]
fn rolled_up_ranges_draw_a_min_max_band_behind_the_line_and_raw_ones_do_not() {
    let raw = run(Range::Hour, 10, |i| (i as f64, i as f64, i as f64));
    let h = draw(
        &history(Range::Hour, Vec::new(), Vec::new()),
        Unit::Load,
        load_line(&raw),
        None,
    );
    assert!(all(&h, "path.band").is_empty(), "raw samples have no band");
    assert!(!text(one(&h, "figcaption")).contains("band"));
    assert!(!text(one(&h, "desc")).contains("band"));

    for range in [Range::Day, Range::Week, Range::Month, Range::Year] {
        let rolled = run(range, 10, |i| (0.1, 0.5 + i as f64 / 10.0, 3.0));
        let h = draw(
            &history(range, Vec::new(), Vec::new()),
            Unit::Load,
            load_line(&rolled),
            None,
        );
        let band = one(&h, "path.band.load");
        let line = one(&h, "path.line.load");
        // Behind: the band comes first in the document, so the line is painted over it.
        let order: Vec<&str> = all(&h, "path")
            .into_iter()
            .map(|p| attr(p, "class"))
            .collect();
        assert_eq!(order, ["band load", "line load"], "{range:?}");
        let band = coords(attr(band, "d"));
        assert_eq!(
            band.len(),
            20,
            "{range:?}: along the max, back along the min"
        );
        let line = coords(attr(line, "d"));
        for (i, (x, y)) in line.iter().enumerate() {
            let (top, bottom) = (band[i], band[19 - i]);
            assert_eq!((top.0, bottom.0), (*x, *x));
            assert!(
                top.1 <= *y && *y <= bottom.1,
                "{range:?}: the line is inside its band"
            );
        }
        assert!(text(one(&h, "figcaption")).contains("band: lowest to highest"));
    }
}

#[test]
fn a_node_down_for_a_day_leaves_a_gap_and_a_lone_point_is_a_dot() {
    // 7 days of hourly points with the fourth day missing, then one point on its own.
    let mut points: Vec<Point> = (0..7 * 24)
        .filter(|h| !(72..96).contains(h))
        .map(|h| at((7 * 24 - 1 - h) * 3_600, 3_600, 1.0, 1.5, 2.0))
        .collect();
    points.remove(points.len() - 2); // an hour missing is no gap
    let h = draw(
        &history(Range::Week, Vec::new(), Vec::new()),
        Unit::Load,
        load_line(&points),
        None,
    );
    let d = attr(one(&h, "path.line"), "d");
    assert_eq!(d.matches('M').count(), 2, "two runs: {d}");
    assert_eq!(attr(one(&h, "path.band"), "d").matches('Z').count(), 2);
    assert!(all(&h, "circle.dot").is_empty());
    let segments = chart::segments(&points, 3_600);
    assert_eq!(
        segments.iter().map(|s| s.len()).collect::<Vec<_>>(),
        [72, 71]
    );

    let lone = [
        at(30 * 3_600, 3_600, 1.0, 1.0, 1.0),
        at(0, 3_600, 2.0, 2.0, 2.0),
        at(3_600, 3_600, 2.0, 2.0, 2.0),
    ];
    let mut lone = lone.to_vec();
    lone.sort_by_key(|p| p.t);
    let h = draw(
        &history(Range::Week, Vec::new(), Vec::new()),
        Unit::Load,
        load_line(&lone),
        None,
    );
    assert_eq!(
        all(&h, "circle.dot").len(),
        1,
        "the point 30 h before the others"
    );
    assert_eq!(attr(one(&h, "path.line"), "d").matches('M').count(), 2);
}

#[test]
fn each_chart_has_a_title_and_a_desc_with_its_range_and_extremes() {
    let points = run(Range::Month, 240, |i| {
        (0.05, 0.3, if i == 100 { 7.5 } else { 1.0 })
    });
    let h = draw(
        &history(Range::Month, Vec::new(), Vec::new()),
        Unit::Load,
        load_line(&points),
        Some((4.0, "4 CPUs".into())),
    );
    let svg = one(&h, "svg");
    assert_eq!(attr(svg, "role"), "img");
    assert_eq!(
        text(one(&h, "svg > title")),
        "Load average (1 min), the last 30 days"
    );
    assert_eq!(
        text(one(&h, "svg > desc")),
        "load 1 min: lowest 0.05, highest 7.50. 240 points of 3 h, each an average line with its \
         min–max band, reference line at 4 CPUs. Times in UTC."
    );
    assert_eq!(attr(one(&h, "path.line"), "data-points"), "240");
    assert!(text(one(&h, "figcaption")).contains("240 points of 3 h"));

    // Nothing in the range: said, not drawn.
    let h = draw(
        &history(Range::Year, Vec::new(), Vec::new()),
        Unit::Load,
        load_line(&[]),
        None,
    );
    assert!(all(&h, "svg").is_empty());
    assert_eq!(
        text(one(&h, "p.no-data")),
        "No load average (1 min) in the last year."
    );
}

#[test]
fn the_range_selector_links_every_range_and_marks_the_current_one() {
    for current in Range::ALL {
        let h = parse(&console::range_selector(A, current));
        let nav = one(&h, "nav.ranges");
        assert_eq!(attr(nav, "aria-label"), "History range");
        let links = all(&h, "nav a");
        let got: Vec<(String, &str)> = links.iter().map(|a| (text(*a), attr(*a, "href"))).collect();
        let want: Vec<(String, String)> = Range::ALL
            .iter()
            .map(|r| {
                (
                    console::range_label(*r).to_string(),
                    format!("/console?node={A}&range={}", r.name()),
                )
            })
            .collect();
        assert_eq!(
            got.iter()
                .map(|(t, h)| (t.clone(), h.to_string()))
                .collect::<Vec<_>>(),
            want
        );
        assert_eq!(
            text(one(&h, "a[aria-current=true]")),
            console::range_label(current)
        );
        // Every range link is one the console accepts.
        for a in &links {
            let query = attr(*a, "href").split_once('?').unwrap().1;
            let q: super::forms::ConsoleQuery = serde_urlencoded::from_str(query).unwrap();
            assert_eq!(q.range().unwrap().name(), attr(*a, "data-range"));
        }
    }
}

#[test]
fn the_node_panel_charts_load_memory_each_disk_with_its_forecast_and_checks_not_ok() {
    let range = Range::Week;
    let ok = run(range, 48, |_| (3.0, 3.0, 3.0));
    let mut p = panel(summary(A, "alpha", AttentionLevel::Ok), Vec::new());
    p.range = range;
    p.history = Ok(Some(history(
        range,
        vec![
            (
                "load1",
                run(range, 48, |i| (0.0, 1.0, if i == 10 { 8.0 } else { 2.0 })),
            ),
            ("mem_used_pct", run(range, 48, |_| (20.0, 25.0, 30.0))),
            ("swap_used_pct", run(range, 48, |_| (0.0, 1.0, 2.0))),
            ("checks_ok", ok.clone()),
            ("checks_warn", run(range, 48, |_| (0.0, 0.0, 0.0))),
            (
                "checks_crit",
                run(range, 48, |i| (0.0, 0.0, if i == 5 { 1.0 } else { 0.0 })),
            ),
            (
                "disk_used_pct:/",
                run(range, 48, |i| {
                    (50.0 + i as f64, 50.0 + i as f64, 50.0 + i as f64)
                }),
            ),
            ("disk_used_pct:/srv", run(range, 48, |_| (10.0, 10.0, 10.0))),
            ("disk_used_pct:/tmp", run(range, 2, |_| (1.0, 1.0, 1.0))),
        ],
        vec![
            DiskForecast {
                mount: "/".into(),
                used_pct: 97.0,
                pct_per_day: 24.0,
                days_until_full: Some(0.125),
                hours: 168,
            },
            DiskForecast {
                mount: "/srv".into(),
                used_pct: 10.0,
                pct_per_day: 0.0,
                days_until_full: None,
                hours: 168,
            },
        ],
    )));
    let h = parse(&console::node(&p, now()));
    inert(&h);
    let section = one(&h, "section.history");
    assert_eq!(attr(section, "data-range"), "7d");
    assert_eq!(text(one(&h, ".ranges a[aria-current]")), "7 d");
    let titles = labels(&h, "svg > title");
    assert_eq!(
        titles,
        [
            "Load average (1 min), the last 7 days",
            "Memory and swap in use, the last 7 days",
            "Disk / used, the last 7 days",
            "Disk /srv used, the last 7 days",
            "Disk /tmp used, the last 7 days",
            "Checks not OK, the last 7 days",
        ]
    );
    assert_eq!(
        text(one(&h, ".ref-label")),
        "2 CPUs",
        "the summary's CPU count"
    );
    let figures = all(&h, "figure.chart");
    assert_eq!(
        figures[0]
            .select(&Selector::parse("path.line").unwrap())
            .count(),
        1,
        "load 1 min only"
    );
    let memory = &figures[1];
    let classes: Vec<&str> = memory
        .select(&Selector::parse("path.line").unwrap())
        .map(|p| attr(p, "class"))
        .collect();
    assert_eq!(classes, ["line mem", "line swap"]);
    let forecasts: Vec<(&str, String)> = all(&h, ".disk-chart")
        .into_iter()
        .map(|d| {
            (
                attr(d, "data-mount"),
                text(
                    d.select(&Selector::parse(".forecast").unwrap())
                        .next()
                        .unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        forecasts,
        [
            (
                "/",
                "full in less than a day at +24.0 %/day (7-day trend)".to_string()
            ),
            ("/srv", "not growing (7-day trend)".to_string()),
            ("/tmp", "no forecast yet: too little history".to_string()),
        ]
    );
    // Only the statuses some check was in: crit (warn stayed 0).
    let checks = all(&h, "figure.chart").into_iter().last().unwrap();
    let lines: Vec<&str> = checks
        .select(&Selector::parse("path.line").unwrap())
        .map(|p| attr(p, "class"))
        .collect();
    assert_eq!(lines, ["line crit"]);
    assert_eq!(attr(checks, "data-unit"), "checks");

    // Every check OK all along: said in a line, no chart.
    p.history = Ok(Some(history(
        range,
        vec![
            ("checks_ok", ok),
            ("checks_crit", run(range, 48, |_| (0.0, 0.0, 0.0))),
        ],
        Vec::new(),
    )));
    let h = parse(&console::node(&p, now()));
    assert_eq!(
        text(one(&h, "[data-checks-ok]")),
        "Every check was OK throughout the last 7 days."
    );
    assert_eq!(
        labels(&h, "p.no-data"),
        [
            "No load average (1 min) in the last 7 days.",
            "No memory and swap in use in the last 7 days."
        ]
    );
    assert!(all(&h, ".disk-chart").is_empty());
}

#[test]
fn a_history_the_store_cannot_read_is_said_and_the_rest_of_the_panel_shows() {
    let mut p = panel(summary(A, "alpha", AttentionLevel::Ok), Vec::new());
    p.history = Err("reading history/…/5m-2026-12-01.jsonl: Permission denied".into());
    let h = parse(&console::node(&p, now()));
    assert_eq!(
        text(one(&h, ".history p.muted")),
        "The history could not be read: reading history/…/5m-2026-12-01.jsonl: Permission denied"
    );
    assert_eq!(
        all(&h, ".ranges a").len(),
        5,
        "another range can still be picked"
    );
    assert_eq!(all(&h, "form").len(), 5, "the forms are there");
    p.history = Ok(None);
    let h = parse(&console::node(&p, now()));
    assert_eq!(
        text(one(&h, ".history p.muted")),
        "No history for this node yet."
    );
}

#[test]
fn the_console_page_is_well_formed_and_holds_every_panel() {
    let mut crit = summary(A, "alpha", AttentionLevel::Crit);
    crit.attention.reasons = vec![reason("stale", AttentionLevel::Crit, "no heartbeat", None)];
    let mut nodes = vec![summary(B, HOSTILE, AttentionLevel::Ok), crit.clone()];
    worst_first(&mut nodes);
    let page = ConsolePage {
        signed_in: None,
        nodes,
        selected: Some(A),
        node: Some(panel(crit, vec![incident(1, IncidentState::Open)])),
        feed: Feed {
            events: vec![event("note", Some(A), json!({"text": HOSTILE}), &[])],
            names: [(A, "alpha".to_string())].into(),
        },
        debug: true,
        ..ConsolePage::default()
    };
    let h = parse(&console::page(&page, now()));
    inert(&h);
    assert_eq!(attr(one(&h, "script[src]"), "src"), "/assets/console.js");
    let body = one(&h, "body");
    assert_eq!(attr(body, "data-selected"), A.to_string());
    assert_eq!(attr(body, "data-debug"), "1");
    for id in ["kpis", "node-list", "node", "attention", "findings", "feed"] {
        let panel = one(&h, &format!("#{id}"));
        if id != "node" {
            assert!(
                attr(panel, "data-fragment").starts_with("/console/"),
                "{id}"
            );
        }
    }
    assert_eq!(
        attr(one(&h, "#node"), "data-fragment"),
        format!("/console/nodes/{A}?range=24h")
    );
    let order: Vec<&str> = all(&h, "#node-list li")
        .into_iter()
        .map(|li| attr(li, "data-level"))
        .collect();
    assert_eq!(order, ["crit", "ok"], "worst first");
    assert_eq!(text(one(&h, "#feed .node")), "alpha");

    let overview = parse(&dashboard::page(&page.nodes, &EnrollHint::default(), now()));
    inert(&overview);
    assert_eq!(
        attr(one(&overview, "script[src]"), "src"),
        "/assets/dashboard.js"
    );
    assert_eq!(all(&overview, "tbody tr").len(), 2);
}

#[test]
fn worst_first_orders_by_level_then_hostname() {
    let mut nodes = vec![
        summary(A, "b", AttentionLevel::Ok),
        summary(A, "z", AttentionLevel::Attn),
        summary(A, "a", AttentionLevel::Ok),
        summary(A, "y", AttentionLevel::Crit),
    ];
    worst_first(&mut nodes);
    let names: Vec<&str> = nodes.iter().map(|n| n.hostname.as_str()).collect();
    assert_eq!(names, ["y", "z", "a", "b"]);
}

#[test]
fn the_node_panel_shows_each_measurement_and_says_what_is_missing() {
    let mut s = summary(A, "alpha", AttentionLevel::Ok);
    s.load1 = None;
    s.cpu_count = None;
    let mut p = panel(s, Vec::new());
    p.detail.latest.cloudflare_ok = false;
    p.detail.latest.checks.clear();
    let h = parse(&console::node(&p, now()));
    let tiles: Vec<String> = all(&h, ".tile p").into_iter().map(text).collect();
    assert_eq!(tiles, ["–", "25%", "down", "up"]);
    assert_eq!(attr(all(&h, ".tile p")[2], "class"), "flag bad");
    assert_eq!(text(one(&h, "table.compact tbody tr")), "/ext442%");
    assert_eq!(
        text(one(&h, "h3 + p.muted")),
        "This agent reports no checks."
    );
    assert!(all(&h, ".incident").is_empty());
    assert_eq!(
        all(&h, "form").len(),
        5,
        "note, incident, silence, rename and decommission"
    );
}

#[test]
fn views_components_and_format_read_no_state_and_know_no_http() {
    for (file, source) in [
        ("view/mod.rs", include_str!("view/mod.rs")),
        ("view/console.rs", include_str!("view/console.rs")),
        ("view/chart.rs", include_str!("view/chart.rs")),
        ("view/dashboard.rs", include_str!("view/dashboard.rs")),
        ("components.rs", include_str!("components.rs")),
        ("format.rs", include_str!("format.rs")),
    ] {
        for word in [
            "AppState",
            "vaultmesh_store",
            "vaultmesh_engines",
            "crate::server",
            "axum",
            "HeaderMap",
            "State<",
            "ApiError",
        ] {
            assert!(!source.contains(word), "ui/{file} names {word}");
        }
    }
    // Pure text: markup is the components'.
    assert!(!include_str!("format.rs").contains("maud"));
}

#[test]
fn the_node_panel_offers_a_confirmed_decommission_and_a_decommissioned_node_says_so() {
    let p = panel(summary(A, "alpha", AttentionLevel::Crit), Vec::new());
    let h = parse(&console::node(&p, now()));
    let form = one(&h, "form[data-decommission]");
    assert_eq!(
        attr(form, "action"),
        format!("/console/nodes/{A}/decommission")
    );
    assert_eq!(attr(form, "method"), "post");
    let confirm = one(&h, "form[data-decommission] input[name=confirm]");
    assert_eq!(attr(confirm, "type"), "checkbox");
    assert_eq!(attr(confirm, "value"), "yes", "what forms.rs requires");
    assert!(
        confirm.value().attr("required").is_some(),
        "the browser requires it"
    );
    assert!(all(&h, "[data-decommissioned]").is_empty());

    let mut s = summary(A, "alpha", AttentionLevel::Ok);
    s.revoked = Some(NodeRevoked {
        at: now(),
        by: "admin@example.com".into(),
        readmitted: false,
        decommissioned: true,
    });
    let row = parse(&components::node_row(&s, None, now()));
    assert_eq!(text(one(&row, "[data-revoked]")), "decommissioned");
    let h = parse(&console::node(&panel(s, Vec::new()), now()));
    assert!(all(&h, "form[data-decommission]").is_empty());
    let said = text(one(&h, "[data-decommissioned]"));
    assert!(
        said.starts_with("Decommissioned by admin@example.com"),
        "{said}"
    );
    assert!(said.contains("node readmit"), "{said}");
}

#[test]
fn labels_show_in_the_row_and_the_panel_and_the_filter_matches_them_and_the_profile() {
    let mut n = summary(A, "Alpha", AttentionLevel::Ok);
    n.labels = [("site", "fra1"), ("role", "db")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let h = parse(&components::node_row(&n, None, now()));
    let li = one(&h, "li[data-node-id]");
    assert_eq!(
        attr(li, "data-search"),
        "alpha archvault profile:archvault role:db site:fra1"
    );
    let shown: Vec<String> = all(&h, ".profile .label").into_iter().map(text).collect();
    assert_eq!(shown, ["role:db", "site:fra1"]);
    let h = parse(&console::node(&panel(n, Vec::new()), now()));
    assert_eq!(text(one(&h, "p.labels")), "labels: role:db, site:fra1");
}

fn labelled_node(id: u128, host: &str, level: AttentionLevel, site: Option<&str>) -> NodeSummary {
    let mut n = summary(Uuid::from_u128(id), host, level);
    if let Some(site) = site {
        n.labels.insert("site".into(), site.into());
    }
    n.labels.insert("role".into(), "db".into());
    n
}

/// The names, totals and counts by level of a grouped list's headers, in order.
fn group_heads(h: &Html) -> Vec<String> {
    all(h, "#node-list > li.group > details > summary")
        .into_iter()
        .map(|s| {
            let count = |k: &str| text(one_in(s, &format!("[data-count={k}]")));
            format!(
                "{} {} {}/{}/{}",
                text(one_in(s, ".group-name")),
                count("total"),
                count("crit"),
                count("attn"),
                count("ok")
            )
        })
        .collect()
}

fn one_in<'a>(e: ElementRef<'a>, css: &str) -> ElementRef<'a> {
    let found: Vec<_> = e.select(&Selector::parse(css).unwrap()).collect();
    assert_eq!(found.len(), 1, "{css}: {}", e.html());
    found[0]
}

/// Issue 25 (the seed's node tree): the list grouped by a label has a group per value, by name,
/// each headed by its name, its count and its counts by level, its rows worst first; the nodes
/// without the label come last, in "(no site)".
#[test]
fn grouped_by_a_label_the_list_has_a_group_per_value_with_counts_and_the_unlabelled_last() {
    let mut nodes = vec![
        labelled_node(1, "alpha", AttentionLevel::Ok, Some("fra1")),
        labelled_node(2, "beta", AttentionLevel::Crit, Some("fra1")),
        labelled_node(3, "gamma", AttentionLevel::Attn, Some("ams3")),
        labelled_node(4, "delta", AttentionLevel::Crit, None),
        labelled_node(5, "epsilon", AttentionLevel::Attn, Some("fra1")),
    ];
    worst_first(&mut nodes);
    let site = Grouping::Label("site".into());
    let h = parse(&console::node_list(
        &nodes,
        Some(Uuid::from_u128(2)),
        &site,
        now(),
    ));
    let list = one(&h, "#node-list");
    assert_eq!(attr(list, "data-group-by"), "label:site");
    assert_eq!(attr(list, "data-none-name"), "(no site)");
    assert_eq!(
        group_heads(&h),
        ["ams3 1 0/1/0", "fra1 3 1/1/1", "(no site) 1 1/0/0"]
    );
    assert_eq!(
        text(one(&h, "li.group[data-group=ams3] [data-plural]")),
        "node"
    );
    assert_eq!(
        text(one(&h, "li.group[data-group=fra1] [data-plural]")),
        "nodes"
    );
    let groups = all(&h, "#node-list > li.group");
    let last = *groups.last().unwrap();
    assert_eq!(
        last.value().attr("data-group"),
        None,
        "the unlabelled group"
    );
    assert!(
        all(&h, "details")
            .iter()
            .all(|d| d.value().attr("open").is_some())
    );
    // Each group's rows keep the list's order (worst first, then by name) and say their group.
    let rows = |g: &str| -> Vec<(String, Option<String>)> {
        all(&h, &format!("li.group{g} li[data-node-id]"))
            .into_iter()
            .map(|r| {
                (
                    attr(r, "data-name").to_string(),
                    r.value().attr("data-group").map(str::to_string),
                )
            })
            .collect()
    };
    let fra1 = Some("fra1".to_string());
    assert_eq!(
        rows("[data-group=fra1]"),
        [
            ("beta".to_string(), fra1.clone()),
            ("epsilon".to_string(), fra1.clone()),
            ("alpha".to_string(), fra1)
        ]
    );
    assert_eq!(rows(":not([data-group])"), [("delta".to_string(), None)]);
    // A row's link keeps the grouping; the selected row is still marked.
    let beta = one(&h, "li[data-name=beta]");
    assert_eq!(beta.value().attr("class"), Some("selected"));
    assert_eq!(
        attr(one(&h, "li[data-name=beta] a"), "href"),
        "/console?node=00000000-0000-0000-0000-000000000002&group=label:site"
    );
    // Not grouped: today's flat list, rows without a group, links without one.
    let h = parse(&console::node_list(&nodes, None, &Grouping::None, now()));
    assert!(all(&h, "li.group, [data-group], [data-group-by]").is_empty());
    let order: Vec<&str> = all(&h, "#node-list > li[data-node-id]")
        .into_iter()
        .map(|r| attr(r, "data-name"))
        .collect();
    assert_eq!(order, ["beta", "delta", "epsilon", "gamma", "alpha"]);
    assert_eq!(
        attr(one(&h, "li[data-name=beta] a"), "href"),
        "/console?node=00000000-0000-0000-0000-000000000002"
    );
    // One row, as the script fetches it for a grouped list.
    let row = parse(&components::grouped_row(&nodes[0], None, &site, now()));
    assert_eq!(attr(one(&row, "li"), "data-group"), "fra1");
    // Grouped by profile, every node has one.
    nodes[1].os_profile = "DebianVault".into();
    let h = parse(&console::node_list(&nodes, None, &Grouping::Profile, now()));
    assert_eq!(
        group_heads(&h),
        ["ArchVault 4 1/2/1", "DebianVault 1 1/0/0"]
    );
    // A label no node has: one group, of every node.
    let h = parse(&console::node_list(
        &nodes,
        None,
        &Grouping::Label("zone".into()),
        now(),
    ));
    assert_eq!(group_heads(&h), ["(no zone) 5 2/2/1"]);
    // An empty fleet says how to add a node, grouped or not.
    let h = parse(&console::node_list(&[], None, &site, now()));
    assert!(text(one(&h, "li.empty")).starts_with("No nodes have reported yet."));
    assert_eq!(console::label_keys(&nodes), ["role", "site"]);
}

#[test]
fn hostile_profile_names_and_label_values_are_text_in_group_headers() {
    let mut n = summary(A, "alpha", AttentionLevel::Crit);
    n.os_profile = HOSTILE.into();
    n.labels.insert("site".into(), HOSTILE.into());
    for group in [Grouping::Profile, Grouping::Label("site".into())] {
        let h = parse(&console::node_list(
            std::slice::from_ref(&n),
            None,
            &group,
            now(),
        ));
        inert(&h);
        assert_eq!(text(one(&h, ".group-name")), HOSTILE);
        assert_eq!(attr(one(&h, "li.group"), "data-group"), HOSTILE);
        assert_eq!(attr(one(&h, "li[data-node-id]"), "data-group"), HOSTILE);
    }
    // The key is the console's own (a-z 0-9 _ - .), but the view escapes it all the same.
    let h = parse(&console::node_list(
        std::slice::from_ref(&n),
        None,
        &Grouping::Label(HOSTILE.into()),
        now(),
    ));
    inert(&h);
    assert_eq!(text(one(&h, ".group-name")), format!("(no {HOSTILE})"));
    assert_eq!(
        attr(one(&h, "#node-list"), "data-none-name"),
        format!("(no {HOSTILE})")
    );
}

/// The "Group by" select is a GET form of `/console` (no script needed) that keeps the page's
/// node, range and debug mode, and offers none, profile and each label key of the fleet.
#[test]
fn the_console_page_offers_group_by_as_a_get_form_and_renders_the_grouping_it_names() {
    let mut nodes = vec![
        labelled_node(1, "alpha", AttentionLevel::Ok, Some("fra1")),
        labelled_node(2, "beta", AttentionLevel::Crit, None),
    ];
    worst_first(&mut nodes);
    let selected = nodes[0].clone();
    let mut node = panel(selected.clone(), Vec::new());
    node.range = Range::Week;
    let page = ConsolePage {
        signed_in: None,
        label_keys: console::label_keys(&nodes),
        group: Grouping::Label("site".into()),
        nodes,
        selected: Some(selected.node_id),
        node: Some(node),
        debug: true,
        ..ConsolePage::default()
    };
    let h = parse(&console::page(&page, now()));
    inert(&h);
    let form = one(&h, "form[data-group-form]");
    assert_eq!(attr(form, "method"), "get");
    assert_eq!(attr(form, "action"), "/console");
    let hidden: Vec<(&str, &str)> = all(&h, "form[data-group-form] input[type=hidden]")
        .into_iter()
        .map(|i| (attr(i, "name"), attr(i, "value")))
        .collect();
    let id = selected.node_id.to_string();
    assert_eq!(
        hidden,
        [("node", id.as_str()), ("range", "7d"), ("debug", "1")]
    );
    let options: Vec<(&str, String, bool)> = all(&h, "form[data-group-form] option")
        .into_iter()
        .map(|o| {
            (
                attr(o, "value"),
                text(o),
                o.value().attr("selected").is_some(),
            )
        })
        .collect();
    assert_eq!(
        options,
        [
            ("none", "none".to_string(), false),
            ("profile", "profile".to_string(), false),
            ("label:role", "label: role".to_string(), false),
            ("label:site", "label: site".to_string(), true),
        ]
    );
    assert_eq!(text(one(&h, "form[data-group-form] button")), "Group");
    assert_eq!(group_heads(&h), ["fra1 1 0/0/1", "(no site) 1 1/0/0"]);
    // Not grouped, `none` is the choice, and the filter box is still there.
    let page = ConsolePage {
        signed_in: None,
        group: Grouping::None,
        ..page
    };
    let h = parse(&console::page(&page, now()));
    assert_eq!(
        attr(one(&h, "form[data-group-form] option[selected]"), "value"),
        "none"
    );
    assert_eq!(attr(one(&h, "#filter"), "type"), "search");
    assert!(all(&h, "li.group").is_empty());
}

#[test]
fn a_display_name_leads_with_the_hostname_beside_it_in_every_view_and_stays_text() {
    let mut n = summary(A, "vault-node-01", AttentionLevel::Attn);
    n.attention.reasons = vec![reason("tunnel", AttentionLevel::Attn, "Tunnel down", None)];
    n.display_name = Some("Frankfurt edge 1".into());

    let row = parse(&components::node_row(&n, None, now()));
    let li = one(&row, "li[data-node-id]");
    assert_eq!(attr(li, "data-name"), "Frankfurt edge 1", "sorted by it");
    assert!(
        attr(li, "data-search").contains("frankfurt edge 1"),
        "the filter box matches it"
    );
    assert!(
        attr(li, "data-search").contains("vault-node-01"),
        "and the hostname"
    );
    assert_eq!(text(one(&row, ".name .display-name")), "Frankfurt edge 1");
    assert_eq!(
        attr(one(&row, ".name .display-name"), "title"),
        "vault-node-01"
    );
    assert_eq!(text(one(&row, ".name .host-sub")), "vault-node-01");

    let p = panel(n.clone(), Vec::new());
    let node = parse(&console::node(&p, now()));
    assert_eq!(
        text(one(&node, "h2")),
        "ATTN Frankfurt edge 1 vault-node-01"
    );
    let why = parse(&console::attention(std::slice::from_ref(&n), Grants::ALL));
    assert_eq!(text(one(&why, "h3 a .display-name")), "Frankfurt edge 1");
    assert_eq!(text(one(&why, "h3 a .host-sub")), "vault-node-01");
    let table = overview(&n);
    assert_eq!(
        text(one(&table, ".host a .display-name")),
        "Frankfurt edge 1"
    );
    assert_eq!(text(one(&table, ".host a .host-sub")), "vault-node-01");

    // Untrusted: a hostile name is text everywhere.
    n.display_name = Some(HOSTILE.into());
    for h in [
        parse(&components::node_row(&n, None, now())),
        parse(&console::node(&panel(n.clone(), Vec::new()), now())),
        parse(&console::attention(std::slice::from_ref(&n), Grants::ALL)),
        overview(&n),
    ] {
        inert(&h);
        assert_eq!(text(one(&h, ".display-name")), HOSTILE);
    }
    let node = parse(&console::node(&panel(n.clone(), Vec::new()), now()));
    assert_eq!(
        attr(
            one(&node, "form[data-rename] input[name=display_name]"),
            "value"
        ),
        HOSTILE
    );

    // Without one: the hostname alone, as before.
    n.display_name = None;
    let row = parse(&components::node_row(&n, None, now()));
    assert!(all(&row, ".display-name, .host-sub").is_empty());
    assert_eq!(text(one(&row, ".name")), "vault-node-01");
}

#[test]
fn lists_sort_by_the_name_shown() {
    let mut zulu = summary(A, "aaa-host", AttentionLevel::Ok);
    zulu.display_name = Some("zulu edge".into());
    let bravo = summary(B, "bravo", AttentionLevel::Ok);
    let mut v = vec![zulu, bravo];
    worst_first(&mut v);
    let names: Vec<&str> = v.iter().map(|n| n.name()).collect();
    assert_eq!(
        names,
        ["bravo", "zulu edge"],
        "by code point, as the script sorts"
    );
    // Equal names go by node id, whatever order they come in; names compare by code point
    // (U+FF21 before U+1F600, where UTF-16 units would put the emoji first).
    let mut twin_b = summary(B, "b-host", AttentionLevel::Ok);
    twin_b.display_name = Some("edge".into());
    let mut twin_a = summary(A, "a-host", AttentionLevel::Ok);
    twin_a.display_name = Some("edge".into());
    let mut emoji = summary(Uuid::from_u128(7), "emoji", AttentionLevel::Ok);
    emoji.display_name = Some("\u{1F600}".into());
    let mut wide = summary(Uuid::from_u128(8), "wide", AttentionLevel::Ok);
    wide.display_name = Some("\u{FF21}".into());
    let mut v = vec![emoji, twin_b, wide, twin_a];
    worst_first(&mut v);
    let ids: Vec<String> = v.iter().map(|n| n.hostname.clone()).collect();
    assert_eq!(ids, ["a-host", "b-host", "wide", "emoji"]);
}

#[test]
fn the_lifecycle_section_renames_by_post_and_offers_no_rename_once_decommissioned() {
    let mut s = summary(A, "alpha", AttentionLevel::Ok);
    s.display_name = Some("Alpha edge".into());
    let h = parse(&console::node(&panel(s.clone(), Vec::new()), now()));
    let form = one(&h, "form[data-rename]");
    assert_eq!(attr(form, "action"), format!("/console/nodes/{A}/rename"));
    assert_eq!(attr(form, "method"), "post");
    assert!(form.value().attr("data-console-form").is_some());
    let input = one(&h, "form[data-rename] input[name=display_name]");
    assert_eq!(
        attr(input, "value"),
        "Alpha edge",
        "filled with the current name"
    );
    assert_eq!(attr(input, "maxlength"), "64");
    assert_eq!(attr(input, "placeholder"), "alpha");
    // What it posts is what the form handler reads.
    let fields = posted(form);
    let body = serde_urlencoded::to_string(&fields).unwrap();
    let f: super::forms::RenameForm = serde_urlencoded::from_str(&body).unwrap();
    assert_eq!(f.display_name, "Alpha edge");

    s.revoked = Some(NodeRevoked {
        at: now(),
        by: "admin@example.com".into(),
        readmitted: false,
        decommissioned: true,
    });
    let h = parse(&console::node(&panel(s, Vec::new()), now()));
    assert!(all(&h, "form[data-rename]").is_empty());
}

#[test]
fn the_console_offers_each_role_only_what_it_may_do() {
    let mut s = summary(A, "web-01", AttentionLevel::Attn);
    s.attention.reasons = vec![reason(
        "disk./",
        AttentionLevel::Attn,
        "Disk / is 91% full",
        None,
    )];
    let forms = |may: Grants| {
        let mut p = panel(s.clone(), Vec::new());
        p.can_sign = true;
        p.allowed = vec![console::AllowedAction {
            action: "agent.ping".into(),
            args: Default::default(),
        }];
        p.may = may;
        let h = parse(&console::node(&p, now()));
        let attention = parse(&console::attention(std::slice::from_ref(&s), may));
        let actions = |h: &Html, sel: &str| {
            h.select(&Selector::parse(sel).unwrap())
                .filter_map(|f| f.value().attr("action").map(str::to_string))
                .collect::<Vec<_>>()
        };
        (
            actions(&h, "form[method=post]"),
            actions(&attention, "form[method=post]"),
        )
    };
    let (viewer, viewer_attention) = forms(Role::Viewer.grants());
    assert!(viewer.is_empty(), "a viewer is offered no form: {viewer:?}");
    assert!(viewer_attention.is_empty(), "{viewer_attention:?}");
    let (operator, operator_attention) = forms(Role::Operator.grants());
    assert!(
        operator.iter().any(|a| a == "/console/events"),
        "{operator:?}"
    );
    assert!(
        operator.iter().any(|a| a == "/console/commands"),
        "{operator:?}"
    );
    assert!(
        !operator
            .iter()
            .any(|a| a.ends_with("/decommission") || a.ends_with("/rename")),
        "{operator:?}"
    );
    assert!(!operator_attention.is_empty());
    let (admin, _) = forms(Role::Admin.grants());
    assert!(
        admin.iter().any(|a| a.ends_with("/decommission")),
        "{admin:?}"
    );
    assert!(admin.iter().any(|a| a.ends_with("/rename")), "{admin:?}");
    // A token that may issue commands but not write events gets the command forms only.
    let (commands_only, _) = forms(Grants::of(&[Permission::Read, Permission::CommandsIssue]));
    assert!(
        commands_only.iter().all(|a| a == "/console/commands") && !commands_only.is_empty(),
        "{commands_only:?}"
    );
}
