//! JSON handlers: the agent API and the admin read API.

use axum::Json;
use axum::body::Bytes;
use std::collections::BTreeSet;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, Uri};
use vaultmesh_proto::auth::{EnrollRequest, EnrollResponse};

use crate::agent_auth::{Signed, signed_parts};
use axum::http::StatusCode;
use serde::Deserialize;
use vaultmesh_proto::EventEnvelope;
use vaultmesh_proto::event::{NewEvent, OPERATOR_KINDS, SYSTEM_KINDS};

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use chrono::Utc;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use vaultmesh_proto::{
    Health, HeartbeatAccepted, IncidentState, NodeDetail, NodeHeartbeat, NodeSummary, ScanAccepted,
    ScanReport,
};
use vaultmesh_store::EventQuery;

use crate::error::ApiError;
use crate::server::AppState;

/// `POST /api/agent/heartbeat` (signed by the node key).
pub async fn post_heartbeat(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<Json<HeartbeatAccepted>, ApiError> {
    state.spend(
        signed.node_id,
        vaultmesh_engines::budget::Kind::Heartbeats,
        signed.body.len(),
    )?;
    let hb: NodeHeartbeat = parse_json(&signed.headers, signed.body)?;
    hb.validate()
        .map_err(|e| ApiError::UnprocessableEntity(format!("invalid heartbeat: {e}")))?;
    if hb.node_id != signed.node_id {
        return Err(ApiError::Forbidden(format!(
            "heartbeat is for node {} but signed by node {}",
            hb.node_id, signed.node_id
        )));
    }
    let node_id = hb.node_id;
    let received_at = Utc::now();
    state.store.record_heartbeat(hb, received_at).await?;
    state.metrics.heartbeats.inc();
    tracing::debug!(%node_id, "Heartbeat accepted.");
    Ok(Json(HeartbeatAccepted {
        accepted: true,
        node_id,
        received_at,
    }))
}

/// `POST /api/agent/enroll`: bind a node id to its key, with an enrollment token. The request is
/// signed by the key being enrolled.
pub async fn post_enroll(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Json<EnrollResponse>, ApiError> {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    // Cheap checks first, and none that stores anything: the source's rate, the shape, the
    // token. Only then the signature and the replay guard, which remembers the request.
    let remote = connect.map(|axum::Extension(axum::extract::ConnectInfo(a))| a);
    state
        .enroll_rate
        .check(crate::agent_auth::source(&headers, remote))?;
    let parts = signed_parts(&headers, method.as_str(), &path)?;
    parts.check_clock()?;
    // Only now the body: a source over its rate, or unsigned junk, is refused unread.
    let body = <Bytes as axum::extract::FromRequest<AppState>>::from_request(req, &state).await?;
    let req: EnrollRequest = parse_json_as(&headers, body.clone(), "enrollment")?;
    if parts.node_id != req.node_id {
        return Err(ApiError::Unauthorized(
            vaultmesh_engines::auth::Refusal::BadSignature,
            format!(
                "enrollment for node {} signed as node {}",
                req.node_id, parts.node_id
            ),
        ));
    }
    let key = vaultmesh_proto::auth::parse_public_key(&req.public_key)
        .map_err(|e| ApiError::UnprocessableEntity(format!("invalid enrollment: {e}")))?;
    req.validate()
        .map_err(|e| ApiError::UnprocessableEntity(format!("invalid enrollment: {e}")))?;
    let token = crate::enroll_tokens::matching(&state, &req.token, Utc::now())?;
    parts.verify(&key, &body, state.store.as_ref()).await?;
    let enrolled_at = match state.store.enroll(&req, token.clone()).await {
        Err(vaultmesh_store::StoreError::TokenRefused { id, state: why }) => {
            return Err(crate::enroll_tokens::refused(&id, why));
        }
        Err(vaultmesh_store::StoreError::Revoked(refusal)) => {
            // Every refusal is answered, and logged like every refusal (`refusals`); the event
            // log hears of each revocation's refusals at most once per `REFUSAL_EVENT_EVERY` —
            // keyed by the revoked node, not the claimed one, so a stolen key tried under
            // ever-new node ids cannot flood it either.
            if state
                .enroll_refusals
                .first_in_window(refusal.subject(), refusal.code())
                && let Err(e) = state
                    .store
                    .record_enroll_refused(req.node_id, &refusal, &req.public_key)
                    .await
            {
                tracing::error!(node_id = %req.node_id, error = %e, "Cannot log the refused enrollment.");
            }
            return Err(ApiError::Revoked(refusal.to_string()));
        }
        other => other?,
    };
    tracing::info!(node_id = %req.node_id, token = %token.id(), "Node enrolled.");
    Ok(Json(EnrollResponse {
        enrolled: true,
        node_id: req.node_id,
        enrolled_at,
    }))
}

/// Body of `POST /api/nodes/{id}/revoke`, `/decommission` and `/readmit` (optional).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleBody {
    /// Readmit only: let the node come back with the key it was revoked with (default: a new
    /// key only).
    #[serde(default)]
    pub allow_old_key: bool,
    /// Why, for the event log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Longest `reason` of a revocation or re-admission.
const REASON_MAX: usize = vaultmesh_proto::event::limits::TITLE;

/// Reply to `POST /api/nodes/{id}/revoke`, `/decommission` and `/readmit`: the event that
/// was logged.
#[derive(Debug, serde::Serialize)]
pub struct LifecycleReply {
    pub node_id: Uuid,
    /// `revoked`, `decommissioned` or `readmitted`.
    pub state: &'static str,
    pub event: EventEnvelope,
}

/// A lifecycle `reason` fits the event log: at most [`REASON_MAX`] bytes, nothing deceptive.
pub fn check_reason(r: &str) -> Result<(), ApiError> {
    if r.len() > REASON_MAX {
        return Err(ApiError::UnprocessableEntity(format!(
            "reason is {} bytes; the limit is {REASON_MAX}",
            r.len()
        )));
    }
    if let Some(c) = vaultmesh_proto::text::first_deceptive(r, &[]) {
        return Err(ApiError::UnprocessableEntity(format!(
            "reason contains U+{:04X}: a control character, or a bidirectional or invisible one, that could make it read as something else",
            u32::from(c)
        )));
    }
    Ok(())
}

/// What the lifecycle routes read: the node, the optional body (checked) and who asks — the
/// signed-in identity, else `anonymous` (loopback without auth).
fn lifecycle_request(
    id: &str,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(Uuid, LifecycleBody, String), ApiError> {
    let node_id = parse_node_id(id)?;
    let b: LifecycleBody = if body.is_empty() {
        LifecycleBody::default()
    } else {
        parse_json_as(headers, body, "request")?
    };
    if let Some(r) = &b.reason {
        check_reason(r)?;
    }
    Ok((node_id, b, author(identity, "anonymous")))
}

/// Who an admin write is by: the signed-in identity, else `fallback` (loopback without auth).
pub fn author(
    identity: Option<axum::Extension<crate::access::Identity>>,
    fallback: &str,
) -> String {
    identity
        .and_then(|axum::Extension(who)| who.author().map(str::to_string))
        .unwrap_or_else(|| fallback.into())
}

/// `POST /api/nodes/{id}/revoke`: the node's key stops working at once, and neither the node
/// nor its key may enroll again until an admin re-admits it.
pub async fn revoke_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LifecycleReply>, ApiError> {
    let (node_id, reason, by) = revocation_request(&id, identity, &headers, body?, "revoke")?;
    revocation(&state, node_id, by, reason, false).await
}

/// `POST /api/nodes/{id}/decommission`: the node is revoked (its key refused, as by `revoke`)
/// and leaves the node list, attention, the KPIs and notifications; its history stays in the
/// logs. `readmit`, then an enrollment, brings it back.
pub async fn decommission_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LifecycleReply>, ApiError> {
    let (node_id, reason, by) = revocation_request(&id, identity, &headers, body?, "decommission")?;
    revocation(&state, node_id, by, reason, true).await
}

/// What `revoke` and `decommission` read: [`lifecycle_request`] without `allow_old_key`.
fn revocation_request(
    id: &str,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: &HeaderMap,
    body: Bytes,
    verb: &str,
) -> Result<(Uuid, Option<String>, String), ApiError> {
    let (node_id, b, by) = lifecycle_request(id, identity, headers, body)?;
    if b.allow_old_key {
        return Err(ApiError::UnprocessableEntity(format!(
            "allow_old_key belongs to readmit, not {verb}"
        )));
    }
    Ok((node_id, b.reason, by))
}

/// Revokes (or, with `decommission`, decommissions) `node_id` for `by`: the API's routes and
/// the console's form.
pub async fn revocation(
    state: &AppState,
    node_id: Uuid,
    by: String,
    reason: Option<String>,
    decommission: bool,
) -> Result<Json<LifecycleReply>, ApiError> {
    let (event, what) = if decommission {
        let e = state
            .store
            .decommission(node_id, by.clone(), reason)
            .await?;
        (e, "decommissioned")
    } else {
        (
            state.store.revoke(node_id, by.clone(), reason).await?,
            "revoked",
        )
    };
    tracing::warn!(%node_id, %by, "Node {what}.");
    Ok(Json(LifecycleReply {
        node_id,
        state: what,
        event,
    }))
}

/// `POST /api/nodes/{id}/readmit`: a revoked node may enroll again — with a new key, unless
/// the body says `allow_old_key`.
pub async fn readmit_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LifecycleReply>, ApiError> {
    let (node_id, b, by) = lifecycle_request(&id, identity, &headers, body?)?;
    let event = state
        .store
        .readmit(node_id, by.clone(), b.reason, b.allow_old_key)
        .await?;
    tracing::warn!(%node_id, %by, allow_old_key = b.allow_old_key, "Node re-admitted.");
    Ok(Json(LifecycleReply {
        node_id,
        state: "readmitted",
        event,
    }))
}

/// Body of `POST /api/nodes/{id}/rename`: `display_name` is required; `null` or an empty
/// string clears it (the node is shown by its hostname again).
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    #[serde(deserialize_with = "nullable")]
    pub display_name: Option<String>,
}

/// `display_name`: must be present, may be `null`; a wrong type names the field.
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
        .map_err(|e| serde::de::Error::custom(format!("display_name: {e}")))
}

/// Reply to `POST /api/nodes/{id}/rename`: the node's display name now (`null`: cleared) and
/// the `node_renamed` event that was logged.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct RenameReply {
    pub node_id: Uuid,
    pub display_name: Option<String>,
    pub event: EventEnvelope,
}

/// `POST /api/nodes/{id}/rename`: sets the node's display name — 1 to 64 characters once
/// trimmed, no control, bidirectional or invisible character — or clears it (`null`, `""`).
/// Logged as a `node_renamed` event authored by the signed-in admin.
pub async fn rename_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RenameReply>, ApiError> {
    let node_id = parse_node_id(&id)?;
    let b: RenameBody = parse_json_as(&headers, body?, "request")?;
    let by = author(identity, "anonymous");
    rename(
        &state,
        node_id,
        by,
        b.display_name.as_deref().unwrap_or_default(),
    )
    .await
}

/// Renames `node_id` to `given` (checked here; empty clears) for `by`: the API's route and the
/// console's form.
pub async fn rename(
    state: &AppState,
    node_id: Uuid,
    by: String,
    given: &str,
) -> Result<Json<RenameReply>, ApiError> {
    let display_name = vaultmesh_proto::display_name::check(given)?;
    let event = state
        .store
        .rename(node_id, by.clone(), display_name.clone())
        .await?;
    tracing::info!(%node_id, %by, "Node renamed.");
    Ok(Json(RenameReply {
        node_id,
        display_name,
        event,
    }))
}

/// `POST /api/agent/scans` (signed by the node key): store a sovereign scan report.
pub async fn post_scan(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<Json<ScanAccepted>, ApiError> {
    state.spend(
        signed.node_id,
        vaultmesh_engines::budget::Kind::Scans,
        signed.body.len(),
    )?;
    let report: ScanReport = parse_json_as(&signed.headers, signed.body, "scan report")?;
    report
        .validate()
        .map_err(|e| ApiError::UnprocessableEntity(format!("invalid scan report: {e}")))?;
    let skew = chrono::Duration::seconds(vaultmesh_proto::auth::MAX_SKEW_SECS);
    if report.finished_at > Utc::now() + skew {
        return Err(ApiError::UnprocessableEntity(format!(
            "invalid scan report: finished_at {} is in the future (check the node's clock)",
            report.finished_at.to_rfc3339()
        )));
    }
    if report.node_id != signed.node_id {
        return Err(ApiError::Forbidden(format!(
            "scan report is for node {} but signed by node {}",
            report.node_id, signed.node_id
        )));
    }
    if state.store.snapshot(report.node_id).is_none() {
        return Err(ApiError::Conflict(format!(
            "node {} has not sent a heartbeat yet; send one before scan reports",
            report.node_id
        )));
    }
    let accepted = state.store.record_scan(report, Utc::now()).await?;
    if !accepted.duplicate {
        state.metrics.scans.inc();
    }
    tracing::info!(node_id = %signed.node_id, scan_id = %accepted.scan_id, duplicate = accepted.duplicate, drift = accepted.drift, "Scan report accepted.");
    Ok(Json(accepted))
}

/// Query of `GET /api/nodes`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesParams {
    /// `decommissioned`: list the decommissioned nodes too.
    include: Option<String>,
}

/// What `?include=` takes.
const INCLUDES: [&str; 1] = ["decommissioned"];

/// Whether a summary is of a decommissioned node (out of the fleet's lists until it enrolls
/// again).
pub fn decommissioned(s: &NodeSummary) -> bool {
    s.revoked.as_ref().is_some_and(|r| r.decommissioned)
}

/// `GET /api/nodes`: the fleet, without decommissioned nodes unless
/// `?include=decommissioned`.
pub async fn list_nodes(
    State(state): State<AppState>,
    params: Result<Query<NodesParams>, QueryRejection>,
) -> Result<Json<Vec<NodeSummary>>, ApiError> {
    let Query(p) = params?;
    let all = match p.include.as_deref() {
        None => false,
        Some("decommissioned") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "include={:?} is not something to include{}; include takes {}",
                other.chars().take(32).collect::<String>(),
                vaultmesh_process::suggest::did_you_mean(other, INCLUDES),
                INCLUDES.join(", ")
            )));
        }
    };
    let mut nodes = state.store.summaries();
    if !all {
        nodes.retain(|s| !decommissioned(s));
    }
    Ok(Json(nodes))
}

/// One row of `GET /api/attention`.
#[derive(Debug, serde::Serialize)]
pub struct AttentionRow {
    pub node_id: Uuid,
    pub hostname: String,
    /// The name an admin gave the node (absent when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub os_profile: String,
    pub last_seen: chrono::DateTime<Utc>,
    pub attention: vaultmesh_proto::Attention,
}

/// `GET /api/attention`: the nodes that are not OK (or have suppressed reasons), worst first.
pub async fn attention(State(state): State<AppState>) -> Json<Vec<AttentionRow>> {
    let mut rows: Vec<AttentionRow> = state
        .store
        .summaries()
        .into_iter()
        .filter(|s| !s.attention.reasons.is_empty() && !decommissioned(s))
        .map(|s| AttentionRow {
            node_id: s.node_id,
            hostname: s.hostname,
            display_name: s.display_name,
            os_profile: s.os_profile,
            last_seen: s.last_seen,
            attention: s.attention,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.attention
            .level
            .cmp(&a.attention.level)
            .then_with(|| a.hostname.cmp(&b.hostname))
    });
    Json(rows)
}

/// `GET /api/nodes/{id}`.
pub async fn get_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeDetail>, ApiError> {
    let node_id = parse_node_id(&id)?;
    let d = state
        .store
        .detail(node_id)
        .ok_or_else(|| ApiError::NotFound(format!("no node {node_id}")))?;
    Ok(Json(d))
}

/// Query of `GET /api/nodes/{id}/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    range: Option<String>,
    metrics: Option<String>,
}

/// `GET /api/nodes/{id}/history?range=1h|24h|7d|30d|1y&metrics=load1,mem_used_pct,...`
/// (range `24h` and every metric by default).
pub async fn node_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<vaultmesh_proto::history::NodeHistory>, ApiError> {
    let node_id = parse_node_id(&id)?;
    let Query(p) = params?;
    let range = crate::ui::forms::range_or_default(p.range.as_deref())?;
    let metrics: Vec<String> = p
        .metrics
        .as_deref()
        .map(|m| {
            m.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let h = state
        .store
        .history(node_id, range, &metrics)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no node {node_id}")))?;
    Ok(Json(h))
}

/// `GET /healthz`, always 200 while the server answers: `status` is `alarm` while the ledger's
/// tamper alarm stands, else `degraded` while the logs refuse writes, else `ok`.
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let alarm = state.ledger.alarm();
    let degraded = state.storage.failing().map(|f| f.cause);
    let status = match (&alarm, &degraded) {
        (Some(_), _) => "alarm",
        (None, Some(_)) => "degraded",
        (None, None) => "ok",
    };
    Json(Health {
        status: status.into(),
        version: crate::VERSION.into(),
        nodes: state.store.node_count(),
        alarm,
        degraded,
        attention: state.attention.fleet(),
    })
}

/// `GET /api/ledger/root`: the newest signed checkpoint.
pub async fn ledger_root(State(state): State<AppState>) -> Json<vaultmesh_store::ledger::RootView> {
    Json(state.ledger.root())
}

/// `GET /api/ledger/proof/{scan_id}`: a scan's inclusion proof in the newest checkpoint.
pub async fn ledger_proof(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<vaultmesh_store::ledger::ProofView>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|e| {
        let shown: String = id.chars().take(64).collect();
        ApiError::BadRequest(format!("{shown:?} is not a scan id (UUID): {e}"))
    })?;
    state.ledger.proof(id).map(Json).map_err(|e| match e {
        vaultmesh_store::ledger::LedgerError::NotFound(m) => ApiError::NotFound(m),
        vaultmesh_store::ledger::LedgerError::Tampered(m) => {
            ApiError::Unavailable(format!("no proofs while the tamper alarm stands: {m}"))
        }
        other => ApiError::Unavailable(other.to_string()),
    })
}

/// Parses a comma-separated list of kinds from query parameter `param`, each one of `allowed`;
/// `None` when absent or empty.
pub fn parse_kinds(
    param: &str,
    text: Option<&str>,
    allowed: &[&str],
) -> Result<Option<BTreeSet<String>>, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let set: BTreeSet<String> = text
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = set.iter().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "{param}={bad:?} is not one of {}",
            allowed.join(", ")
        )));
    }
    Ok(Some(set))
}

/// Parses a node id from a path segment, with a message that shows what was wrong.
pub fn parse_node_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|e| {
        let shown: String = text.chars().take(64).collect();
        ApiError::BadRequest(format!("{shown:?} is not a node id (UUID): {e}"))
    })
}

/// Checks the content type and parses the body, turning serde's error into a 400/422 message.
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: Bytes) -> Result<T, ApiError> {
    parse_json_as(headers, body, "heartbeat")
}

/// Like [`parse_json`], naming `what` in shape errors ("invalid event: ...").
pub fn parse_json_as<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Bytes,
    what: &str,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json")
                || (m.len() > 5 && m[m.len() - 5..].eq_ignore_ascii_case("+json"))
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(&body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            // Well-formed JSON of the wrong shape: a missing field, a wrong type, a bad UUID.
            Category::Data => ApiError::UnprocessableEntity(format!("invalid {what}: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::BadRequest(format!("malformed JSON: {e}"))
            }
        }
    })
}

/// `POST /api/events`: validate, stamp, store durably, broadcast; 201 with the stored envelope.
pub async fn post_event(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<EventEnvelope>), ApiError> {
    let new: NewEvent = parse_json_as(&headers, body?, "event")?;
    let author = new
        .validate()
        .map_err(|e| ApiError::UnprocessableEntity(e.to_string()))?;
    // A tag (it sets labels, which route notifications) is an admin's call; a bot with
    // scopes posts notes and incidents only.
    crate::roles::check_event_kind(identity.as_ref().map(|axum::Extension(who)| who), &new.kind)
        .map_err(|e| ApiError::NotAllowed(e.to_string()))?;
    // A signed-in identity is the author, whatever the body claims.
    let author = identity
        .and_then(|axum::Extension(who)| who.author().map(str::to_string))
        .unwrap_or(author);
    // `node:` authors are the agents' (`post_agent_event`): no identity may appear as a node.
    if vaultmesh_proto::event::is_node_author(&author) {
        return Err(ApiError::Forbidden(
            vaultmesh_proto::event::EventError::ReservedAuthor(author).to_string(),
        ));
    }
    let stored = state.store.record_event(new, author).await?;
    tracing::info!(id = %stored.id, kind = %stored.kind, "Event recorded.");
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Events a node may post about itself a minute, and at once (defaults of
/// `--agent-event-rate`, `--agent-event-burst`).
pub const AGENT_EVENTS_PER_MINUTE: u32 = 10;
pub const AGENT_EVENT_BURST: u32 = 5;

/// Largest body of `POST /api/agent/events`: an event body at its limit
/// ([`vaultmesh_proto::event::limits::BODY_BYTES`]), escaped, with the envelope's other members.
pub const AGENT_EVENT_BODY_MAX: usize = 64 * 1024;

/// `POST /api/agent/events` (signed by the node key, or with a session MAC): a `note` or an
/// `incident` about the requesting node, authored by it (`node:<id>`). The body is
/// `POST /api/events`'s; `node_id` may be absent (the node itself) but may not name another node,
/// and `author` may be absent or the node's own author, nothing else. Each node may post
/// `--agent-event-rate` a minute (bursts of `--agent-event-burst`), on top of `--agent-rate`.
pub async fn post_agent_event(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<(StatusCode, Json<EventEnvelope>), ApiError> {
    // Counted before the body is read as an event: a node's junk spends its allowance too.
    state.event_rate.check(signed.node_id)?;
    let new: NewEvent = parse_json_as(&signed.headers, signed.body, "event")?;
    let (new, author) = new.from_node(signed.node_id).map_err(|e| {
        use vaultmesh_proto::event::NodeEventError as E;
        match e {
            E::OtherNode { .. } | E::OtherAuthor { .. } => ApiError::Forbidden(e.to_string()),
            E::Kind(_) | E::Refs(_) | E::Invalid(_) => ApiError::UnprocessableEntity(e.to_string()),
        }
    })?;
    if state.store.snapshot(signed.node_id).is_none() {
        return Err(ApiError::Conflict(format!(
            "node {} has not sent a heartbeat yet; send one before events",
            signed.node_id
        )));
    }
    // Open incidents are kept (and notified) until resolved: a node, looping or compromised,
    // may hold only so many of its own open at once.
    if new.kind == "incident" {
        let open = state.store.detail(signed.node_id).map_or(0, |d| {
            d.incidents
                .iter()
                .filter(|i| i.state != IncidentState::Resolved && i.opened_by == author)
                .count()
        });
        if open >= NODE_OPEN_INCIDENTS_MAX {
            return Err(ApiError::Conflict(format!(
                "node {} has {open} open incidents of its own (at most {NODE_OPEN_INCIDENTS_MAX}); an operator resolves some before it opens more",
                signed.node_id
            )));
        }
    }
    let stored = state.store.record_event(new, author).await?;
    state
        .metrics
        .agent_events
        .with_label_values(&[stored.kind.as_str()])
        .inc();
    tracing::info!(node_id = %signed.node_id, id = %stored.id, kind = %stored.kind, "Event from a node recorded.");
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Most open incidents a node may have opened itself at once (`POST /api/agent/events`).
pub const NODE_OPEN_INCIDENTS_MAX: usize = 20;

/// Query of `GET /api/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    since: Option<String>,
    kind: Option<String>,
    node_id: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
}

/// Most events one `GET /api/events` returns.
pub const EVENTS_MAX: usize = 1000;

/// `GET /api/events?since=&kind=&node_id=&limit=&order=newest|oldest` (newest first by default).
pub async fn list_events(
    State(state): State<AppState>,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Json<Vec<EventEnvelope>>, ApiError> {
    let Query(p) = params?;
    let since = p
        .since
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::BadRequest(format!("since={s:?} is not an RFC 3339 time: {e}"))
                })
        })
        .transpose()?;
    let all: Vec<&str> = OPERATOR_KINDS
        .iter()
        .chain(SYSTEM_KINDS.iter())
        .copied()
        .collect();
    let kinds = parse_kinds("kind", p.kind.as_deref(), &all)?;
    let node_id = p.node_id.as_deref().map(parse_node_id).transpose()?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > EVENTS_MAX {
        return Err(ApiError::BadRequest(format!(
            "limit={limit} must be between 1 and {EVENTS_MAX}"
        )));
    }
    let newest_first = match p.order.as_deref() {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(o) => {
            return Err(ApiError::BadRequest(format!(
                "order={o:?} must be newest or oldest"
            )));
        }
    };
    let q = EventQuery {
        since,
        kinds,
        node_id,
        limit,
        newest_first,
    };
    Ok(Json(state.store.query_events(q).await?))
}

/// `GET /api/notifiers`: each notifier's health and the queue's length (404 without
/// `--notify-config`).
pub async fn notifiers(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let n = state.notify.as_ref().ok_or_else(|| {
        ApiError::NotFound("notifications are not configured (--notify-config)".into())
    })?;
    Ok(Json(serde_json::json!({
        "pending": n.queue.pending(),
        "notifiers": n.health(),
    })))
}
