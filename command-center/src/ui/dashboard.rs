//! `GET /`: the fleet overview table, worst nodes first.

use axum::extract::State;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use vaultmesh_proto::{CheckStatus, NodeSummary};

use super::format::{age, num2, pct};
use crate::server::AppState;

/// Interim verdict per row until the attention model lands: the worst of staleness, the two
/// seed flags and the heartbeat's check statuses, with the reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Attn,
    Crit,
}

fn level(
    n: &NodeSummary,
    now: DateTime<Utc>,
    stale_after: std::time::Duration,
) -> (Level, Vec<String>) {
    let mut reasons = Vec::new();
    let mut level = Level::Ok;
    let silent = (now - n.last_seen).to_std().unwrap_or_default();
    if silent > stale_after {
        level = Level::Crit;
        reasons.push(format!(
            "no heartbeat for {}",
            age(n.last_seen, now).trim_end_matches(" ago")
        ));
    }
    if !n.services_ok {
        level = Level::Crit;
        reasons.push("services down".into());
    }
    if n.receipt_chain_ok == Some(false) {
        level = Level::Crit;
        reasons.push("command receipt chain broken".into());
    }
    match n.worst_check {
        Some(CheckStatus::Crit) => level = Level::Crit,
        Some(CheckStatus::Warn | CheckStatus::Unknown) => level = level.max(Level::Attn),
        Some(CheckStatus::Ok) | None => {}
    }
    reasons.extend(n.checks_not_ok.iter().cloned());
    if !n.cloudflare_ok {
        level = level.max(Level::Attn);
        reasons.push("tunnel down".into());
    }
    (level, reasons)
}

fn pill(level: Level) -> Markup {
    let (class, text) = match level {
        Level::Ok => ("pill ok", "OK"),
        Level::Attn => ("pill attn", "ATTN"),
        Level::Crit => ("pill crit", "CRIT"),
    };
    html! { span class=(class) { (text) } }
}

fn flag(ok: bool, yes: &str, no: &str) -> Markup {
    html! { span class=(if ok { "flag ok" } else { "flag bad" }) { (if ok { yes } else { no }) } }
}

/// `GET /`.
pub async fn dashboard(State(state): State<AppState>) -> Markup {
    let now = Utc::now();
    let mut rows: Vec<_> = state
        .store
        .summaries()
        .into_iter()
        .map(|n| {
            let (lvl, reasons) = level(&n, now, state.stale_after);
            (lvl, reasons, n)
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.hostname.cmp(&b.2.hostname)));
    let count = |l: Level| rows.iter().filter(|r| r.0 == l).count();
    let (ok, attn, crit) = (count(Level::Ok), count(Level::Attn), count(Level::Crit));

    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // Interim: reload every 10 s until the live event stream drives this page.
                meta http-equiv="refresh" content="10";
                title { "VaultMesh Command Center" }
                link rel="stylesheet" href="/assets/app.css";
            }
            body {
                header {
                    h1 { "VaultMesh Command Center" }
                    p class="kpis" {
                        span { strong { (rows.len()) } " nodes" }
                        span class="k-ok" { strong { (ok) } " healthy" }
                        span class="k-attn" { strong { (attn) } " attention" }
                        span class="k-crit" { strong { (crit) } " critical" }
                    }
                }
                main {
                    @if rows.is_empty() {
                        section class="empty" {
                            p { "No nodes have reported yet." }
                            p { "On a node, run " code { "VAULTMESH_CC_URL=https://cc.example vaultmesh-node-agent run --once" } "." }
                        }
                    } @else {
                        table id="nodes" {
                            thead { tr {
                                th { "Status" } th { "Host" } th { "Profile" } th { "Last seen" }
                                th { "Tunnel" } th { "Services" } th class="num" { "Load 1m" }
                                th class="num" { "Memory" } th class="num" { "Fullest disk" }
                            } }
                            tbody {
                                @for (lvl, reasons, n) in &rows {
                                    tr data-node-id=(n.node_id) {
                                        td { (pill(*lvl)) @if !reasons.is_empty() { div class="why" { (reasons.join(", ")) } } }
                                        td { div class="host" { (n.hostname) } div class="id" { (n.node_id) } }
                                        td { (n.os_profile) }
                                        td title=(n.last_seen.to_rfc3339()) { (age(n.last_seen, now)) }
                                        td { (flag(n.cloudflare_ok, "connected", "down")) }
                                        td { (flag(n.services_ok, "up", "down")) }
                                        td class="num" {
                                            (num2(n.load1))
                                            @if let Some(c) = n.cpu_count { span class="sub" { " / " (c) " CPU" } }
                                        }
                                        td class="num" { (pct(n.mem_used_pct)) }
                                        td class="num" {
                                            (pct(n.disk_max_used_pct))
                                            @if let Some(m) = &n.disk_max_mount { span class="sub" { " " (m) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                footer { "vaultmesh-command-center " (crate::VERSION) " · " a href="/api/nodes" { "/api/nodes" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use uuid::Uuid;

    fn node() -> NodeSummary {
        NodeSummary {
            node_id: Uuid::nil(),
            hostname: "h".into(),
            os_profile: "ArchVault".into(),
            last_seen: Utc::now(),
            cloudflare_ok: true,
            services_ok: true,
            agent_version: None,
            load1: None,
            cpu_count: None,
            mem_used_pct: None,
            disk_max_used_pct: None,
            disk_max_mount: None,
            worst_check: None,
            checks_not_ok: Vec::new(),
            heartbeats: 1,
            receipt_chain_ok: None,
        }
    }

    #[test]
    fn levels_and_reasons() {
        let stale = Duration::from_secs(120);
        let now = Utc::now();
        let check = |f: &dyn Fn(&mut NodeSummary), want: Level, why: &[&str]| {
            let mut n = node();
            n.last_seen = now;
            f(&mut n);
            let (l, r) = level(&n, now, stale);
            assert_eq!(
                (l, r.iter().map(String::as_str).collect::<Vec<_>>()),
                (want, why.to_vec())
            );
        };
        check(&|_| {}, Level::Ok, &[]);
        check(&|n| n.cloudflare_ok = false, Level::Attn, &["tunnel down"]);
        check(
            &|n| {
                n.worst_check = Some(CheckStatus::Warn);
                n.checks_not_ok = vec!["disk: warn".into()];
            },
            Level::Attn,
            &["disk: warn"],
        );
        check(&|n| n.services_ok = false, Level::Crit, &["services down"]);
        check(
            &|n| n.receipt_chain_ok = Some(false),
            Level::Crit,
            &["command receipt chain broken"],
        );
        check(
            &|n| n.last_seen = now - chrono::Duration::seconds(600),
            Level::Crit,
            &["no heartbeat for 10m"],
        );
    }
}
