//! The UI's HTTP handlers: each extracts its input ([`super::forms`]), reads the state, and
//! hands plain data to a view ([`super::view`]). No markup here; this is the one place a
//! [`FormError`] becomes a status code.
//!
//! | URL | answer |
//! |-----|--------|
//! | `/` | the overview table |
//! | `/console` | the mission console (`?node=<id>`, `?range=1h\|24h\|7d\|30d\|1y`, `?group=none\|profile\|label:<key>`, `?debug=1`) |
//! | `/console/kpis` | the mission bar's counts |
//! | `/console/nodes` | the node list, worst first (`?selected=<id>`, `?group=`) |
//! | `/console/nodes/{id}` | the selected node (`?range=`) |
//! | `/console/nodes/{id}/row` | one row of the node list (`?selected=`, `?group=`) |
//! | `/console/attention` | why each node is not OK |
//! | `/console/findings` | the latest scans' findings by severity |
//! | `/console/feed` | the global event feed |
//! | `POST /console/events` | the console's event forms (note, incident, ack, resolve, silence) |
//! | `POST /console/commands` | the node panel's command form |
//! | `/assets/*` | the stylesheet and the two scripts, from the binary |

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::Markup;
use uuid::Uuid;
use vaultmesh_proto::history::Range;
use vaultmesh_proto::{NodeDetail, NodeSummary};

use super::components::Failing;
use super::forms::{self, CommandForm, ConsoleForm, ConsoleQuery, FormError, ListQuery, NodeQuery};
use super::view::console::{
    self, AllowedAction, CommandLine, ConsolePage, Feed, Findings, NodePanel, SilenceLine,
};
use super::view::{self, worst_first};
use crate::error::ApiError;
use crate::roles::Grants;
use crate::server::AppState;
use vaultmesh_store::EventQuery;

/// Events shown in the feed and in a node's timeline.
const FEED_LEN: usize = 40;
/// Commands shown in a node's timeline.
const COMMANDS_LEN: usize = 10;

const STYLESHEET: &str = include_str!("app.css");
const CONSOLE_JS: &str = include_str!("console.js");
const DASHBOARD_JS: &str = include_str!("dashboard.js");

impl From<FormError> for ApiError {
    fn from(e: FormError) -> Self {
        match e {
            FormError::NotAnId { .. }
            | FormError::UnknownRange { .. }
            | FormError::UnknownGroup { .. }
            | FormError::UnknownField(_)
            | FormError::Missing(_) => ApiError::BadRequest(e.to_string()),
            FormError::NotConfirmed => ApiError::UnprocessableEntity(e.to_string()),
            FormError::UnknownKind(_)
            | FormError::Event(_)
            | FormError::BadDuration { .. }
            | FormError::UnknownAction { .. }
            | FormError::NotAnArgument { .. } => ApiError::UnprocessableEntity(e.to_string()),
        }
    }
}

/// Every node with its attention, worst first; decommissioned nodes have left the fleet's views.
fn sorted_nodes(state: &AppState) -> Vec<NodeSummary> {
    let mut v = state.store.summaries();
    v.retain(|s| !crate::api::decommissioned(s));
    worst_first(&mut v);
    v
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

/// The notifiers whose sends fail.
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

/// The feed's events and their nodes' names ("Frankfurt edge 1 (vault-node-01)", or the
/// hostname). Memory only: this is refetched on events and
/// must never read the log.
fn feed(state: &AppState) -> Feed {
    let events = state.store.recent_events(&EventQuery {
        limit: FEED_LEN,
        newest_first: true,
        ..EventQuery::default()
    });
    let names: HashMap<Uuid, String> = state
        .store
        .summaries()
        .into_iter()
        .map(|s| (s.node_id, s.labelled()))
        .collect();
    Feed { events, names }
}

/// The latest scan of each of `nodes`.
fn findings(state: &AppState, nodes: &[NodeSummary]) -> Findings {
    let mut f = Findings::default();
    for n in nodes {
        if let Some(scan) = state.store.latest_scan(n.node_id) {
            f.add(&n.labelled(), n.node_id, &scan);
        }
    }
    f
}

/// The node panel's data: its events and commands from memory (the newest few hundred events
/// of the fleet), its history over `range` from the store's tiers (one read of at most a few
/// hundred buckets; the panel is refetched on each of the node's heartbeats). A history that
/// cannot be read is said in the panel, which still shows the rest.
async fn node_panel(state: &AppState, detail: NodeDetail, range: Range, may: Grants) -> NodePanel {
    let id = detail.summary.node_id;
    let history = state.store.history(id, range, &[]).await.map_err(|e| {
        tracing::warn!(node_id = %id, range = range.name(), error = %e, "History unreadable for the console.");
        e.to_string()
    });
    let events = state.store.recent_events(&EventQuery {
        node_id: Some(id),
        limit: FEED_LEN,
        newest_first: true,
        ..EventQuery::default()
    });
    let commands = state
        .store
        .commands(Some(id), None, COMMANDS_LEN)
        .into_iter()
        .map(|c| CommandLine {
            status: serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            outcome: c.receipt.as_ref().map(|r| {
                let r = &r.receipt;
                let said = r.reason.as_deref().unwrap_or(&r.output);
                let line = said.lines().next().unwrap_or("");
                vaultmesh_engines::attention::rules::fit(line, 160)
            }),
            action: c.signed.command.action.clone(),
            issued_by: c.signed.command.issued_by.clone(),
            issued_at: c.signed.command.issued_at,
        })
        .collect();
    let now = Utc::now();
    let silences = state
        .store
        .silences()
        .into_iter()
        .filter(|s| s.active(now) && s.node_id.is_none_or(|n| n == id))
        .map(|s| SilenceLine {
            id: s.id,
            fleet_wide: s.node_id.is_none(),
            rule: s.rule,
            until: s.until,
            until_resolved: s.until_resolved,
            by: s.by,
        })
        .collect();
    let allowed = state
        .policies
        .get()
        .allowed(&detail.summary.os_profile)
        .into_iter()
        .map(|a| AllowedAction {
            action: a.action,
            args: a.args,
        })
        .collect();
    NodePanel {
        detail,
        events,
        commands,
        range,
        history,
        silences,
        allowed,
        can_sign: state.cc_key.is_some(),
        may,
    }
}

/// What the request's identity may do, for the views to offer only that.
fn may(identity: &Option<axum::Extension<crate::access::Identity>>) -> Grants {
    crate::roles::grants_of(identity.as_ref().map(|axum::Extension(i)| i))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no node {id}"))
}

/// What an empty fleet's hint says about this Command Center (the overview's and the
/// console's).
fn enroll_hint(state: &AppState) -> view::dashboard::EnrollHint {
    view::dashboard::EnrollHint {
        public_key: state.cc_key.as_ref().map(|k| k.public_base64()),
        has_tokens: !state.tokens.0.is_empty()
            || state
                .store
                .tokens()
                .iter()
                .any(|t| t.state(Utc::now()) == vaultmesh_store::tokens::TokenState::Active),
    }
}

/// `GET /`.
pub async fn dashboard(State(state): State<AppState>) -> Markup {
    view::dashboard::page(&sorted_nodes(&state), &enroll_hint(&state), Utc::now())
}

/// `GET /console`: the selected node is `?node=`, or the worst one.
pub async fn console_page(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    q: Result<Query<ConsoleQuery>, QueryRejection>,
) -> Result<Markup, ApiError> {
    let may = may(&identity);
    let Query(q) = q?;
    let range = q.range()?;
    // Taken before the state is read: the page's stream resumes after this event, so an event
    // published while the page is put together is replayed rather than missed.
    let since = state.bus.last_id();
    let nodes = sorted_nodes(&state);
    let label_keys = console::label_keys(&nodes);
    let group = q.group(&label_keys)?;
    let group_notice = forms::group_notice(&group, &label_keys);
    let selected = match q.node()? {
        Some(id) => Some(id),
        None => nodes.first().map(|n| n.node_id),
    };
    let node = match selected.and_then(|id| state.store.detail(id)) {
        Some(d) => Some(node_panel(&state, d, range, may).await),
        None => None,
    };
    let page = ConsolePage {
        signed_in: identity
            .filter(|i| i.via == crate::roles::Via::Session)
            .map(|i| i.0.name),
        node,
        feed: feed(&state),
        findings: findings(&state, &nodes),
        last_event: last_event(&state),
        failing: failing_notifiers(&state),
        own: state.attention.fleet(),
        debug: q.debug(),
        hint: enroll_hint(&state),
        since: Some(since),
        selected,
        nodes,
        group,
        label_keys,
        group_notice,
        may,
    };
    Ok(console::page(&page, Utc::now()))
}

/// `GET /console/kpis`.
pub async fn kpis_fragment(State(state): State<AppState>) -> Markup {
    console::kpis(
        &sorted_nodes(&state),
        last_event(&state),
        &failing_notifiers(&state),
        &state.attention.fleet(),
        Utc::now(),
    )
}

/// `GET /console/nodes`.
pub async fn nodes_fragment(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Markup, ApiError> {
    let selected = q.selected()?;
    let group = q.group()?;
    Ok(console::node_list(
        &sorted_nodes(&state),
        selected,
        &group,
        Utc::now(),
    ))
}

/// `GET /console/nodes/{id}`.
pub async fn node_fragment(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    Path(id): Path<String>,
    q: Result<Query<NodeQuery>, QueryRejection>,
) -> Result<Markup, ApiError> {
    let id = forms::node_id(&id)?;
    let Query(q) = q?;
    let range = q.range()?;
    let d = state.store.detail(id).ok_or_else(|| not_found(id))?;
    Ok(console::node(
        &node_panel(&state, d, range, may(&identity)).await,
        Utc::now(),
    ))
}

/// `GET /console/nodes/{id}/row`: one row of the node list.
pub async fn row_fragment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Markup, ApiError> {
    let id = forms::node_id(&id)?;
    let selected = q.selected()?;
    let group = q.group()?;
    let s = state.store.summary(id).ok_or_else(|| not_found(id))?;
    Ok(super::components::grouped_row(
        &s,
        selected,
        &group,
        Utc::now(),
    ))
}

/// `GET /console/attention`.
pub async fn attention_fragment(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
) -> Markup {
    console::attention(&sorted_nodes(&state), may(&identity))
}

/// `GET /console/findings`.
pub async fn findings_fragment(State(state): State<AppState>) -> Markup {
    console::findings(&findings(&state, &sorted_nodes(&state)))
}

/// `GET /console/feed`.
pub async fn feed_fragment(State(state): State<AppState>) -> Markup {
    console::feed(&feed(&state), Utc::now())
}

/// `POST /console/events`: the console's forms. Answers `201` with the stored envelope to a
/// script (`Accept: application/json`), and a redirect back to the node otherwise.
pub async fn post_form(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    form: Result<Form<ConsoleForm>, FormRejection>,
) -> Result<Response, ApiError> {
    // Posts from other sites never get here: [`crate::guard`] refuses them for every route.
    let Form(f) = form?;
    let signed_in = identity.as_ref().map(|axum::Extension(i)| i.clone());
    let who = crate::api::author(identity, "console");
    let (event, author) = f.into_event(who, chrono::Utc::now())?;
    crate::roles::check_event_kind(signed_in.as_ref(), &event.kind)
        .map_err(|e| ApiError::NotAllowed(e.to_string()))?;
    let stored = state.store.record_event(event, author).await?;
    if wants_json(&headers) {
        return Ok((StatusCode::CREATED, axum::Json(stored)).into_response());
    }
    let back = match stored.node_id {
        Some(n) => format!("/console?node={n}"),
        None => "/console".into(),
    };
    Ok(Redirect::to(&back).into_response())
}

/// Whether the script posted the form (it asks for JSON); a plain form wants a redirect.
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// `POST /console/commands`: the node panel's command form. Issued as `POST /api/commands`
/// issues (the profile's policy decides; the signed-in admin is the issuer), answered `201`
/// with the signed command to the script and a redirect back to the node otherwise; the
/// receipt reaches the panel live, as a `command` event.
pub async fn post_command(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(fields) = form?;
    let f = CommandForm::parse(fields)?;
    let issued_by = crate::api::author(identity, "console");
    let req = vaultmesh_engines::issue::IssueRequest {
        node_id: f.node_id,
        action: f.action,
        args: f.args,
        ttl: vaultmesh_engines::issue::DEFAULT_TTL,
        issued_by,
    };
    let signed = crate::commands::issue_for_admin(&state, req).await?;
    if wants_json(&headers) {
        return Ok((StatusCode::CREATED, axum::Json(signed)).into_response());
    }
    Ok(Redirect::to(&format!("/console?node={}", f.node_id)).into_response())
}

/// `POST /console/nodes/{id}/decommission`: the node panel's decommission form (its "I
/// understand" box ticked), decommissioned as `POST /api/nodes/{id}/decommission` does, by the
/// signed-in admin. Answers `200` with the logged event to the script, and a redirect to the
/// console (the node has left its list) otherwise.
pub async fn post_decommission(
    State(state): State<AppState>,
    Path(id): Path<String>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    form: Result<Form<forms::DecommissionForm>, FormRejection>,
) -> Result<Response, ApiError> {
    // Posts from other sites never get here: [`crate::guard`] refuses them for every route.
    let id = forms::node_id(&id)?;
    let Form(f) = form?;
    let reason = f.confirmed_reason()?;
    if let Some(r) = &reason {
        crate::api::check_reason(r)?;
    }
    let by = crate::api::author(identity, "console");
    let reply = crate::api::revocation(&state, id, by, reason, true).await?;
    if wants_json(&headers) {
        return Ok(reply.into_response());
    }
    Ok(Redirect::to("/console").into_response())
}

/// `POST /console/nodes/{id}/rename`: the node panel's rename form, renamed as `POST
/// /api/nodes/{id}/rename` does (an empty name clears it), by the signed-in admin. Answers
/// `200` with the reply to the script, and a redirect to the node's panel otherwise.
pub async fn post_rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    form: Result<Form<forms::RenameForm>, FormRejection>,
) -> Result<Response, ApiError> {
    // Posts from other sites never get here: [`crate::guard`] refuses them for every route.
    let id = forms::node_id(&id)?;
    let Form(f) = form?;
    let by = crate::api::author(identity, "console");
    let reply = crate::api::rename(&state, id, by, &f.display_name).await?;
    if wants_json(&headers) {
        return Ok(reply.into_response());
    }
    Ok(Redirect::to(&format!("/console?node={id}")).into_response())
}

/// `GET /assets/app.css`.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
}

/// `GET /assets/console.js`.
pub async fn console_script() -> impl IntoResponse {
    script(CONSOLE_JS)
}

/// `GET /assets/dashboard.js`.
pub async fn dashboard_script() -> impl IntoResponse {
    script(DASHBOARD_JS)
}

/// A script of the binary, cached five minutes.
pub(super) fn script(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_errors_become_400_for_ids_and_ranges_and_422_for_what_the_form_says() {
        let not_an_id = forms::node_id("nope").expect_err("not a UUID");
        assert_eq!(ApiError::from(not_an_id).status(), StatusCode::BAD_REQUEST);
        let kind = FormError::UnknownKind("shout".into());
        assert_eq!(
            ApiError::from(kind).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let range = forms::range("30x").expect_err("not a range");
        assert_eq!(ApiError::from(range).status(), StatusCode::BAD_REQUEST);
        let group = forms::grouping_in("zone", &[]).expect_err("not a grouping");
        assert_eq!(ApiError::from(group).status(), StatusCode::BAD_REQUEST);
        let event = FormError::Event(vaultmesh_proto::event::EventError::BadAuthor);
        assert_eq!(
            ApiError::from(event).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
