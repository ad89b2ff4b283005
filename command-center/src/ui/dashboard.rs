//! `GET /`: the fleet overview table, worst nodes first.

use axum::extract::State;
use chrono::Utc;
use maud::{DOCTYPE, Markup, html};
use vaultmesh_proto::{AttentionLevel, NodeSummary};

use super::format::{age, num2, pct, pill, services_flag};
use crate::server::AppState;

/// The reasons shown under a node's pill: suppressed ones are marked, not hidden.
fn reasons(n: &NodeSummary) -> Vec<String> {
    n.attention
        .reasons
        .iter()
        .map(|r| match &r.suppressed_by {
            Some(by) => format!("{} ({by})", r.message),
            None => r.message.clone(),
        })
        .collect()
}

fn flag(ok: bool, yes: &str, no: &str) -> Markup {
    html! { span class=(if ok { "flag ok" } else { "flag bad" }) { (if ok { yes } else { no }) } }
}

/// What a node needs to report here, shown while none has: the address, an enrollment token
/// (never shown: it is a secret) and the public key it pins for commands (shown: it is public).
fn empty_fleet_hint(state: &AppState) -> Markup {
    let public = state.cc_key.as_ref().map(|k| k.public_base64());
    let command = format!(
        "VAULTMESH_CC_URL=https://cc.example.com VAULTMESH_ENROLL_TOKEN=<one of this Command Center's enrollment tokens> VAULTMESH_CC_PUBKEY={} vaultmesh-node-agent run",
        public.as_deref().unwrap_or("<its public key>")
    );
    html! {
        section class="empty" {
            p { "No nodes have reported yet." }
            p { "On a node, with this Command Center's address, an enrollment token and its public key, run:" }
            pre { code { (command) } }
            @if state.tokens.0.is_empty() {
                p class="warn" { "This Command Center has no enrollment token (" code { "--enroll-token" } ", " code { "VAULTMESH_ENROLL_TOKEN" } "): no node can enroll." }
            }
            @if public.is_none() {
                p class="warn" { "It has no signing key (" code { "keygen" } ", " code { "--signing-key" } "): nodes can report, but no command can be sent to them." }
            }
            p { "The whole procedure: README, “Run it for real”, and docs/DEPLOY.md." }
        }
    }
}

/// `GET /`.
pub async fn dashboard(State(state): State<AppState>) -> Markup {
    let now = Utc::now();
    let mut summaries = state.store.summaries();
    state.attention.fill(&mut summaries);
    let mut rows: Vec<_> = summaries
        .into_iter()
        .map(|n| (n.attention.level, reasons(&n), n))
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.hostname.cmp(&b.2.hostname)));
    let count = |l: AttentionLevel| rows.iter().filter(|r| r.0 == l).count();
    let (ok, attn, crit) = (
        count(AttentionLevel::Ok),
        count(AttentionLevel::Attn),
        count(AttentionLevel::Crit),
    );

    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "VaultMesh Command Center" }
                link rel="stylesheet" href="/assets/app.css";
                // No favicon request (and no 404 in the console).
                link rel="icon" href="data:,";
                script src="/assets/dashboard.js" defer {}
            }
            body {
                header {
                    h1 { "VaultMesh Command Center" }
                    p id="stream-state" class="stream-state" role="status" aria-live="polite" { "connecting…" }
                    p id="kpis" class="kpis" {
                        span { strong { (rows.len()) } " nodes" }
                        span class="k-ok" { strong { (ok) } " healthy" }
                        span class="k-attn" { strong { (attn) } " attention" }
                        span class="k-crit" { strong { (crit) } " critical" }
                    }
                }
                main id="overview" {
                    @if rows.is_empty() {
                        (empty_fleet_hint(&state))
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
                                        td { div class="host" { (n.hostname) @if n.hostname_shared { " " span class="dup" title="Another node reports this hostname; the node id tells them apart" { "same name" } } @if n.revoked.is_some() { " " span class="dup" data-revoked { "revoked" } } } div class="id" { (n.node_id) } }
                                        td { (n.os_profile) }
                                        td title=(n.last_seen.to_rfc3339()) { (age(n.last_seen, now)) }
                                        td { (flag(n.cloudflare_ok, "connected", "down")) }
                                        td { (services_flag(n.services)) }
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
                footer { "vaultmesh-command-center " (crate::VERSION) " · " a href="/console" { "mission console" } " · " a href="/api/nodes" { "/api/nodes" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn node() -> NodeSummary {
        NodeSummary {
            node_id: Uuid::nil(),
            hostname_shared: false,
            hostname: "h".into(),
            os_profile: "ArchVault".into(),
            last_seen: Utc::now(),
            cloudflare_ok: true,
            services_ok: true,
            services: vaultmesh_proto::Services::Up,
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
            attention: Default::default(),
            last_scan: None,
            revoked: None,
        }
    }

    #[test]
    fn suppressed_reasons_stay_visible_and_marked() {
        let mut n = node();
        n.attention.reasons = vec![
            vaultmesh_proto::Reason {
                rule: "drift".into(),
                level: AttentionLevel::Attn,
                message: "1 change since the previous scan".into(),
                suppressed_by: Some("silenced by ops until resolved".into()),
            },
            vaultmesh_proto::Reason {
                rule: "stale".into(),
                level: AttentionLevel::Crit,
                message: "no heartbeat for 10m".into(),
                suppressed_by: None,
            },
        ];
        assert_eq!(
            reasons(&n),
            [
                "1 change since the previous scan (silenced by ops until resolved)",
                "no heartbeat for 10m"
            ]
        );
    }
}
