//! Small maud fragments the views share: badges, marks, a ticking time, a node's row, the
//! mission bar's banners, the page head and footer, and the skeleton of a console form. Each
//! takes plain data (no state, no request) and its own clock (`now`), so tests render it
//! directly; maud escapes every interpolated string.

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use uuid::Uuid;
use vaultmesh_proto::{AttentionLevel, CheckStatus, NodeSummary, Reason, Services, Severity};

use super::format::{age, level_name};
use super::forms::{FormKind, Grouping};

/// A status pill: colour *and* a word, so colour is never the only signal.
pub fn pill(l: AttentionLevel) -> Markup {
    let (class, text) = level_name(l);
    html! { span class={"pill " (class)} data-pill { (text) } }
}

/// A check's status as a pill (WARN and UNKNOWN are amber).
pub fn check_pill(s: CheckStatus) -> Markup {
    let class = match s {
        CheckStatus::Ok => "ok",
        CheckStatus::Warn | CheckStatus::Unknown => "attn",
        CheckStatus::Crit => "crit",
    };
    html! { span class={"pill " (class)} { (s.as_str().to_uppercase()) } }
}

/// The services flag: `up`, `down`, or `unknown` when the node's systemd could not be reached.
pub fn services_flag(s: Services) -> Markup {
    let class = match s {
        Services::Up => "flag ok",
        Services::Down => "flag bad",
        Services::Unknown => "flag unknown",
    };
    html! { span class=(class) { (s.as_str()) } }
}

/// A yes/no flag in words (`yes` green, `no` red).
pub fn flag(ok: bool, yes: &str, no: &str) -> Markup {
    html! { span class=(if ok { "flag ok" } else { "flag bad" }) { (if ok { yes } else { no }) } }
}

/// A severity's colour class: critical and high are red, medium amber, the rest green.
pub fn sev_class(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "crit",
        Severity::Medium => "attn",
        Severity::Low | Severity::Info => "ok",
    }
}

/// A severity in its colour.
pub fn sev_badge(s: Severity) -> Markup {
    html! { span class={"sev " (sev_class(s))} { (s.as_str()) } }
}

/// A time that the script keeps ticking ("12s ago").
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) data-ago title=(t.to_rfc3339()) { (age(t, now)) } }
}

/// A link that selects a node in the console.
pub fn node_link(id: Uuid, text: &str) -> Markup {
    html! { a href={"/console?node=" (id)} { (text) } }
}

/// A node's name as people read it: its display name, with its hostname beside it in smaller
/// text (and in the name's title); its hostname alone when it has none.
pub fn node_name(n: &NodeSummary) -> Markup {
    html! {
        @if let Some(d) = &n.display_name {
            span class="display-name" data-display-name title=(n.hostname) { (d) }
            " " span class="host-sub" data-hostname { (n.hostname) }
        } @else {
            (n.hostname)
        }
    }
}

/// A link that selects `n` in the console, named as [`node_name`] names it.
pub fn named_link(n: &NodeSummary) -> Markup {
    html! { a href={"/console?node=" (n.node_id)} { (node_name(n)) } }
}

/// The mark of a hostname another node reports too: the node id is what tells them apart.
pub fn shared_hostname(id: Uuid) -> Markup {
    let short = id.simple().to_string();
    html! {
        span class="dup" title="Another node reports this hostname; the node id tells them apart" {
            "same name · " (&short[..8])
        }
    }
}

/// The mark of a revoked (or decommissioned) node: its requests are refused until it enrolls
/// again.
pub fn revoked_mark(n: &NodeSummary) -> Markup {
    html! {
        @if let Some(r) = &n.revoked {
            @if r.decommissioned {
                " " span class="dup" data-revoked="decommissioned" title={"Decommissioned by " (r.by) "; its requests are refused"} {
                    @if r.readmitted { "decommissioned · re-admitted" } @else { "decommissioned" }
                }
            } @else {
                " " span class="dup" data-revoked title={"Revoked by " (r.by) "; its requests are refused"} {
                    @if r.readmitted { "revoked · re-admitted" } @else { "revoked" }
                }
            }
        }
    }
}

/// A reason as an admin reads it at a glance: its label, coloured by its level, with the
/// detail (and who held it back) in the title.
pub fn reason_chip(r: &Reason) -> Markup {
    let title = match &r.suppressed_by {
        Some(by) => format!("{} ({by})", r.message),
        None => r.message.clone(),
    };
    html! {
        span class={"reason " (level_name(r.level).0)} data-rule=(r.rule) title=(title)
            data-suppressed=[r.suppressed_by.is_some().then_some("1")] { (r.short()) }
    }
}

/// Whether the node's last heartbeat is old news: what it said is shown "as of" then.
pub fn is_stale(n: &NodeSummary) -> bool {
    n.attention.reasons.iter().any(|r| r.rule == "stale")
}

/// What the node list's filter box matches a row against, lowercased: the hostname, the
/// display name, the profile, `profile:<profile>` and `<key>:<value>` for each label — so
/// `site:fra1`, `profile:archvault` or `frankfurt` narrows the list (every word of the filter
/// must match).
pub fn search_text(n: &NodeSummary) -> String {
    let mut s = format!("{} {} profile:{}", n.hostname, n.os_profile, n.os_profile);
    if let Some(d) = &n.display_name {
        s.push(' ');
        s.push_str(d);
    }
    for (k, v) in &n.labels {
        s.push_str(&format!(" {k}:{v}"));
    }
    s.to_lowercase()
}

/// One row of the console's node list: pill, name and marks, profile, last seen, and the
/// first reason not held back (with how many more). `data-name` is the name the list is sorted
/// by ([`super::view::worst_first`]).
pub fn node_row(n: &NodeSummary, selected: Option<Uuid>, now: DateTime<Utc>) -> Markup {
    grouped_row(n, selected, &Grouping::None, now)
}

/// A row of the node list grouped by `group`: it carries the value of its group
/// (`data-group`, absent for the nodes without the label, whose group is last) and its link
/// keeps the grouping (`&group=`), so a page without script stays grouped.
pub fn grouped_row(
    n: &NodeSummary,
    selected: Option<Uuid>,
    group: &Grouping,
    now: DateTime<Utc>,
) -> Markup {
    let keep = match group {
        Grouping::None => String::new(),
        g => format!("&group={}", g.name()),
    };
    let (level, _) = level_name(n.attention.level);
    let why: Vec<&Reason> = n
        .attention
        .reasons
        .iter()
        .filter(|r| r.suppressed_by.is_none())
        .collect();
    html! {
        li data-node-id=(n.node_id) data-level=(level) data-name=(n.name())
            data-search=(search_text(n)) data-group=[group.value_of(n)]
            class=[(selected == Some(n.node_id)).then_some("selected")] {
            a href={"/console?node=" (n.node_id) (keep)} aria-current=[(selected == Some(n.node_id)).then_some("true")] {
                (pill(n.attention.level))
                span class="name" { (node_name(n)) }
                @if n.hostname_shared { (shared_hostname(n.node_id)) }
                (revoked_mark(n))
                span class="profile" { (n.os_profile) @for (k, v) in &n.labels { " · " span class="label" data-label=(k) { (k) ":" (v) } } }
                span class="seen" { (ago(n.last_seen, now)) }
                @if let Some(first) = why.first() {
                    span class="why" data-why { (reason_chip(first)) @if why.len() > 1 { " +" (why.len() - 1) } }
                }
            }
        }
    }
}

/// A banner for one of the Command Center's own reasons (a full or filling disk).
pub fn cc_banner(r: &Reason) -> Markup {
    html! {
        span class={"k-cc " (level_name(r.level).0)} role="alert" data-cc-rule=(r.rule) {
            strong { "Command Center: " (r.short()) } " — " (r.message)
        }
    }
}

/// A notifier whose sends fail, as the mission bar shows it.
#[derive(Debug, Clone, Default)]
pub struct Failing {
    pub name: String,
    pub since: Option<DateTime<Utc>>,
    /// The last error, without secrets.
    pub error: Option<String>,
    /// Notifications waiting for it.
    pub pending: usize,
}

/// A banner for a failing notifier.
pub fn notifier_banner(f: &Failing, now: DateTime<Utc>) -> Markup {
    html! {
        span class="k-notify" role="alert" data-notifier=(f.name) {
            "notifier " strong { (f.name) } " failing"
            @if let Some(t) = f.since { " since " (ago(t, now)) }
            @if let Some(e) = &f.error { " (" (e) ")" }
            " — " (f.pending) " waiting"
        }
    }
}

/// A page's `head`: its title, the stylesheet and its script (no favicon request, so no 404).
pub fn head(title: &str, script: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="stylesheet" href="/assets/app.css";
            // No favicon request (and no 404 in the console).
            link rel="icon" href="data:,";
            script src=(script) defer {}
        }
    }
}

/// The `head` of a page that is only a message (sign-in's way station, "Signed out"): its
/// title and no favicon request either — a 404 for `/favicon.ico` while the browser waits on
/// the page is an error in its console like any other. With `refresh_to`, the browser moves on
/// there at once.
pub fn message_head(title: &str, refresh_to: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            @if let Some(to) = refresh_to {
                meta http-equiv="refresh" content={ "0; url=" (to) };
            }
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="icon" href="data:,";
        }
    }
}

/// A page's footer: the version, a link to the other page, and the API.
pub fn footer(other: &str, other_name: &str) -> Markup {
    html! {
        footer { "vaultmesh-command-center " (crate::VERSION) " · " a href=(other) { (other_name) } " · " a href="/api/nodes" { "/api/nodes" } }
    }
}

/// What a console form is about: a node (`node_id`) or an incident (`refs`).
#[derive(Debug, Clone, Copy)]
pub enum FormTarget {
    Node(Uuid),
    Incident(Uuid),
}

/// A form posting one console event to `POST /console/events`, which the script takes over
/// (`data-console-form`): the hidden `kind` and target, then `fields`, then the button.
pub fn event_form(
    kind: FormKind,
    target: FormTarget,
    inline: bool,
    fields: Markup,
    button: &str,
) -> Markup {
    let (name, id) = match target {
        FormTarget::Node(id) => ("node_id", id),
        FormTarget::Incident(id) => ("refs", id),
    };
    html! {
        form method="post" action="/console/events" data-console-form class=[inline.then_some("inline")] {
            input type="hidden" name="kind" value=(kind.as_str());
            input type="hidden" name=(name) value=(id);
            (fields)
            button type="submit" { (button) }
        }
    }
}
