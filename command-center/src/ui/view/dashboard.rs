//! The fleet overview (`GET /`): a table of every node, worst first, or — while no node has
//! reported — what a node needs to report here.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use vaultmesh_proto::{AttentionLevel, NodeSummary};

use crate::ui::components::{
    flag, footer, head, is_stale, named_link, pill, reason_chip, revoked_mark, services_flag,
    shared_hostname,
};
use crate::ui::format::{age, num2, pct};

/// What an empty fleet's hint says about this Command Center.
#[derive(Debug, Clone, Default)]
pub struct EnrollHint {
    /// The public key agents pin for commands (public: shown), when it has a signing key.
    pub public_key: Option<String>,
    /// Whether it has an enrollment token, configured or minted and active (a secret: never
    /// shown).
    pub has_tokens: bool,
}

/// What a node needs to report here, shown while none has: the address, an enrollment token
/// (never shown: it is a secret) and the public key it pins for commands (shown: it is public).
pub fn empty_fleet_hint(hint: &EnrollHint) -> Markup {
    let command = format!(
        "VAULTMESH_CC_URL=https://cc.example.com VAULTMESH_ENROLL_TOKEN=<one of this Command Center's enrollment tokens> VAULTMESH_CC_PUBKEY={} vaultmesh-node-agent run",
        hint.public_key.as_deref().unwrap_or("<its public key>")
    );
    html! {
        section class="empty" {
            p { "No nodes have reported yet." }
            p { "Mint an enrollment token on the " a href="/console/add-node" data-add-node { "Add node" } " page: it shows the line to run on the node, with this Command Center's address, the token and its public key. Or, with a token of its configuration, run:" }
            pre { code { (command) } }
            @if !hint.has_tokens {
                p class="warn" { "This Command Center has no enrollment token yet (none configured with " code { "--enroll-token" } ", none minted and active): mint one on the Add node page." }
            }
            @if hint.public_key.is_none() {
                p class="warn" { "It has no signing key (" code { "keygen" } ", " code { "--signing-key" } "): nodes can report, but no command can be sent to them." }
            }
            p { "The whole procedure: README, “Run it for real”, and docs/DEPLOY.md." }
        }
    }
}

/// One node's row of the overview table: the pill and the reasons' labels (details in their
/// titles, suppressed ones marked), the host linking to the node in the console, and what its
/// last heartbeat said — greyed, "as of" then, when the node is stale.
fn row(n: &NodeSummary, now: DateTime<Utc>) -> Markup {
    let stale = is_stale(n);
    html! {
        tr data-node-id=(n.node_id) class=[stale.then_some("stale")] {
            td data-label="Status" {
                (pill(n.attention.level))
                @if !n.attention.reasons.is_empty() {
                    div class="why" { @for r in &n.attention.reasons { (reason_chip(r)) " " } }
                }
            }
            td data-label="Host" { div class="host" { (named_link(n)) @if n.hostname_shared { " " (shared_hostname(n.node_id)) } (revoked_mark(n)) } div class="id" { (n.node_id) } }
            td data-label="Profile" { (n.os_profile) }
            td data-label="Last seen" title=(n.last_seen.to_rfc3339()) { (age(n.last_seen, now)) @if stale { div class="sub" { "values as of then" } } }
            td class="was" data-label="Tunnel" { (flag(n.cloudflare_ok, "connected", "down")) }
            td class="was" data-label="Services" { (services_flag(n.services)) }
            td class="num was" data-label="Load 1m" {
                (num2(n.load1))
                @if let Some(c) = n.cpu_count { span class="sub" { " / " (c) " CPU" } }
            }
            td class="num was" data-label="Memory" { (pct(n.mem_used_pct)) }
            td class="num was" data-label="Fullest disk" {
                (pct(n.disk_max_used_pct))
                @if let Some(m) = &n.disk_max_mount { span class="sub" { " " (m) } }
            }
        }
    }
}

/// `GET /`: the KPIs and the table of `nodes` (worst first), or the empty fleet's hint.
pub fn page(nodes: &[NodeSummary], hint: &EnrollHint, now: DateTime<Utc>) -> Markup {
    let count = |l: AttentionLevel| nodes.iter().filter(|n| n.attention.level == l).count();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("VaultMesh Command Center", "/assets/dashboard.js"))
            body {
                header {
                    h1 { "VaultMesh Command Center" }
                    p id="stream-state" class="stream-state" role="status" aria-live="polite" { "connecting…" }
                    p id="kpis" class="kpis" {
                        span { strong { (nodes.len()) } " nodes" }
                        span class="k-ok" { strong { (count(AttentionLevel::Ok)) } " healthy" }
                        span class="k-attn" { strong { (count(AttentionLevel::Attn)) } " attention" }
                        span class="k-crit" { strong { (count(AttentionLevel::Crit)) } " critical" }
                    }
                }
                main id="overview" {
                    @if nodes.is_empty() {
                        (empty_fleet_hint(hint))
                    } @else {
                        table id="nodes" {
                            thead { tr {
                                th { "Status" } th { "Host" } th { "Profile" } th { "Last seen" }
                                th { "Tunnel" } th { "Services" } th class="num" { "Load 1m" }
                                th class="num" { "Memory" } th class="num" { "Fullest disk" }
                            } }
                            tbody { @for n in nodes { (row(n, now)) } }
                        }
                    }
                }
                (footer("/console", "mission console"))
            }
        }
    }
}
