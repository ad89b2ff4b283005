//! The "Add node" page (`GET /console/add-node`): a form that mints an enrollment token, the
//! one-time result — the token and the line that runs an agent with it, this Command Center's
//! URL and pinned command key — and the tokens still active, each with a revoke button. Plain
//! forms (they work without script); the page's script only adds the copy buttons.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::tokens::{Minted, TokenView};
use crate::ui::components::{ago, footer, head};
use vaultmesh_store::tokens::TokenState;

/// The expiries the form offers (the API takes any duration from 1m to 30d).
pub const EXPIRIES: [(&str, &str); 4] = [
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("30d", "30 days"),
];

/// What the page shows.
#[derive(Debug, Clone, Default)]
pub struct AddNodePage {
    /// Every minted token, newest first (the page lists the active ones).
    pub tokens: Vec<TokenView>,
    /// The token just minted, shown this once.
    pub minted: Option<Minted>,
    /// Why the form was refused, with what it held.
    pub error: Option<String>,
    pub name: String,
    pub uses: String,
    pub expires_in: String,
    /// Tokens from the configuration (`--enroll-token`): counted, never shown.
    pub configured: usize,
    /// The public key agents pin, when this Command Center has a signing key.
    pub cc_public_key: Option<String>,
}

/// The link to this page, for the mission bar and the empty node list.
pub fn add_node_link() -> Markup {
    html! { a class="add-node" href="/console/add-node" data-add-node { "Add node" } }
}

/// The token just minted: the install line to copy, and its three parts.
fn minted(m: &Minted) -> Markup {
    html! {
        section class="minted" id="minted" aria-labelledby="minted-title" data-minted=(m.token.id) {
            h2 id="minted-title" { "Token " code { (m.token.id) } " minted" }
            p class="warn" role="alert" { "Copy it now: the token is shown this once and stored only as its hash." }
            p { "On the new node, run:" }
            pre { code id="install-line" data-install { (m.install) } }
            button type="button" data-copy="install-line" hidden { "Copy the line" }
            dl class="facts" {
                dt { "Command Center URL" } dd { code data-cc-url { (m.cc_url) } }
                dt { "Command key (pinned by the agent)" } dd {
                    @if let Some(k) = &m.cc_public_key { code data-cc-pubkey { (k) } }
                    @else { span class="warn" { "none: this Command Center has no signing key (" code { "keygen" } ", " code { "--signing-key" } "), so nodes report but take no command" } }
                }
                dt { "Enrollment token" } dd { code id="token-secret" data-secret { (m.secret) } }
                dt { "Allows" } dd { (m.token.uses) @if m.token.uses == 1 { " enrollment (single-use)" } @else { " enrollments" } }
                dt { "Expires" } dd { time datetime=(m.token.expires_at.to_rfc3339()) { (m.token.expires_at.format("%Y-%m-%d %H:%M UTC")) } }
            }
            p class="muted" { "If the node reaches this Command Center at another address, change " code { "VAULTMESH_CC_URL" } ". The whole procedure: docs/DEPLOY.md." }
        }
    }
}

/// The form that mints a token.
fn form(p: &AddNodePage) -> Markup {
    let expires = if p.expires_in.is_empty() {
        "24h"
    } else {
        p.expires_in.as_str()
    };
    let uses = if p.uses.is_empty() {
        "1"
    } else {
        p.uses.as_str()
    };
    html! {
        form method="post" action="/console/enroll-tokens" class="mint" data-mint-form {
            @if let Some(e) = &p.error { p class="form-error" role="alert" data-form-error { (e) } }
            label { "Name " input name="name" required maxlength="120" value=(p.name) placeholder="web-03 in fra1" autocomplete="off"; }
            label { "Uses " input name="uses" type="number" min="1" max="1000" value=(uses); }
            label { "Expires in "
                select name="expires_in" {
                    @for (value, text) in EXPIRIES {
                        option value=(value) selected[value == expires] { (text) }
                    }
                }
            }
            button type="submit" { "Mint token" }
        }
    }
}

/// One active token with its revoke button.
fn token_row(t: &TokenView, now: DateTime<Utc>) -> Markup {
    html! {
        tr data-token-id=(t.id) {
            td { (t.name) }
            td { code { (t.id) } }
            td class="num" { (t.uses_left) " of " (t.uses) }
            td title=(t.expires_at.to_rfc3339()) { (t.expires_at.format("%Y-%m-%d %H:%M UTC")) }
            td { (t.created_by) " · " (ago(t.created_at, now)) }
            td {
                form method="post" action={"/console/enroll-tokens/" (t.id) "/revoke"} class="inline" {
                    button type="submit" data-revoke=(t.id) { "Revoke" }
                }
            }
        }
    }
}

/// `GET /console/add-node` (and the answer to its form).
pub fn page(p: &AddNodePage, now: DateTime<Utc>) -> Markup {
    let active: Vec<&TokenView> = p
        .tokens
        .iter()
        .filter(|t| t.state == TokenState::Active)
        .collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Add node · VaultMesh", "/assets/add-node.js"))
            body class="add-node-page" {
                header class="mission-bar" {
                    h1 { a href="/console" { "VaultMesh Mission Console" } }
                    span { "Add node" }
                }
                main class="add-node-main" {
                    @if let Some(m) = &p.minted { (minted(m)) }
                    section aria-labelledby="mint-title" {
                        h2 id="mint-title" { "Mint an enrollment token" }
                        p class="muted" { "A new node presents the token once to enroll its key. Single-use unless you allow more; refused after it expires or once revoked. No restart needed." }
                        (form(p))
                        @if p.cc_public_key.is_none() {
                            p class="warn" { "This Command Center has no signing key (" code { "keygen" } ", " code { "--signing-key" } "): nodes can report, but no command can be sent to them." }
                        }
                    }
                    section aria-labelledby="active-title" {
                        h2 id="active-title" { "Active tokens" }
                        @if active.is_empty() {
                            p class="muted" data-no-tokens { "No minted token is active." }
                        } @else {
                            div class="table-scroll" {
                                table class="compact tokens" {
                                    thead { tr { th { "Name" } th { "Id" } th { "Uses left" } th { "Expires" } th { "Minted by" } th {} } }
                                    tbody { @for t in &active { (token_row(t, now)) } }
                                }
                            }
                        }
                        @if p.configured > 0 {
                            p class="muted" { "This Command Center also accepts " (p.configured) " enrollment token" @if p.configured > 1 { "s" } " from its configuration (" code { "--enroll-token" } "), not listed here." }
                        }
                    }
                }
                (footer("/console", "console"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, state: TokenState) -> TokenView {
        TokenView {
            id: id.into(),
            name: "<script>alert(1)</script>".into(),
            created_at: Utc::now(),
            created_by: "alice".into(),
            expires_at: Utc::now(),
            uses: 2,
            used: 1,
            uses_left: 1,
            state,
            revoked_at: None,
            revoked_by: None,
        }
    }

    #[test]
    fn the_page_lists_active_tokens_escaped_and_shows_a_minted_one_once() {
        let now = Utc::now();
        let mut p = AddNodePage {
            tokens: vec![
                view("aaaaaaaaaaaaaaaa", TokenState::Active),
                view("bbbbbbbbbbbbbbbb", TokenState::Revoked),
            ],
            configured: 1,
            ..AddNodePage::default()
        };
        let html = page(&p, now).into_string();
        assert!(
            html.contains("data-token-id=\"aaaaaaaaaaaaaaaa\""),
            "{html}"
        );
        assert!(!html.contains("bbbbbbbbbbbbbbbb"), "only active tokens");
        assert!(!html.contains("<script>alert"), "escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("1 enrollment token from its configuration"));
        assert!(html.contains("no signing key"));
        assert!(
            !html.contains("data-install"),
            "nothing minted, no install line"
        );
        assert!(
            html.contains(r#"<option value="24h" selected>"#),
            "24h by default: {html}"
        );
        p.minted = Some(Minted {
            token: view("cccccccccccccccc", TokenState::Active),
            secret: "vmt_secret".into(),
            cc_url: "http://127.0.0.1:8088".into(),
            cc_public_key: Some("KEY".into()),
            install: "VAULTMESH_CC_URL=x \"quoted\"".into(),
        });
        p.error = Some("uses: 0 <b>".into());
        let html = page(&p, now).into_string();
        assert!(html.contains("data-secret>vmt_secret<"), "{html}");
        assert!(
            html.contains("VAULTMESH_CC_URL=x &quot;quoted&quot;"),
            "{html}"
        );
        assert!(html.contains("uses: 0 &lt;b&gt;"), "{html}");
        assert!(
            !html.contains(" style=") && !html.contains("<script>"),
            "no inline style or script"
        );
    }
}
