//! JSON handlers: the agent API and the admin read API.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use chrono::Utc;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use vaultmesh_proto::{Health, HeartbeatAccepted, NodeDetail, NodeHeartbeat, NodeSummary};

use crate::error::ApiError;
use crate::server::AppState;
use crate::store::StoreError;

/// `POST /api/agent/heartbeat`.
pub async fn post_heartbeat(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HeartbeatAccepted>, ApiError> {
    let hb: NodeHeartbeat = parse_json(&headers, body?)?;
    hb.validate()
        .map_err(|e| ApiError::UnprocessableEntity(format!("invalid heartbeat: {e}")))?;
    let node_id = hb.node_id;
    let received_at = Utc::now();
    state
        .store
        .record_heartbeat(hb, received_at)
        .await
        .map_err(|e| match e {
            StoreError::NodeLimit(_) | StoreError::Unavailable(_) => {
                ApiError::Unavailable(e.to_string())
            }
        })?;
    tracing::debug!(%node_id, "Heartbeat accepted.");
    Ok(Json(HeartbeatAccepted {
        accepted: true,
        node_id,
        received_at,
    }))
}

/// `GET /api/nodes`.
pub async fn list_nodes(State(state): State<AppState>) -> Json<Vec<NodeSummary>> {
    Json(state.store.summaries())
}

/// `GET /api/nodes/{id}`.
pub async fn get_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeDetail>, ApiError> {
    let node_id = parse_node_id(&id)?;
    state
        .store
        .detail(node_id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no node {node_id}")))
}

/// `GET /healthz`.
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: crate::VERSION.into(),
        nodes: state.store.node_count(),
    })
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
            Category::Data => ApiError::UnprocessableEntity(format!("invalid heartbeat: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::BadRequest(format!("malformed JSON: {e}"))
            }
        }
    })
}
