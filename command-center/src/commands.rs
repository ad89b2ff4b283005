//! Commands: issuing (`POST /api/commands`, policy-checked and signed), listing
//! (`GET /api/commands`), delivery over the agent's long-poll (`GET /api/agent/commands`) and
//! receipts (`POST /api/agent/receipts`). See `docs/COMMANDS.md`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;

use serde::Deserialize;
use uuid::Uuid;
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};

use crate::agent_auth::Signed;
use crate::api::{parse_json_as, parse_node_id};
use crate::error::ApiError;
use crate::server::AppState;
use vaultmesh_store::commands::{CommandStatus, CommandView};

/// Longest long-poll an agent may ask for (Cloudflare's proxy gives up at 100 s). The route's
/// time limit is this plus `--request-timeout` ([`crate::timeout::bound`]).
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The agent's long-poll route.
pub const POLL_ROUTE: &str = "/api/agent/commands";
use vaultmesh_engines::issue::DEFAULT_TTL;

/// Creates a new command-signing key at `path` (mode 0600, fsynced). Never overwrites: an
/// existing file is an error, so a key agents have pinned cannot be lost by accident.
pub fn create_signing_key(
    path: &std::path::Path,
) -> Result<vaultmesh_proto::auth::NodeKey, std::io::Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| std::io::Error::other(format!("no OS randomness: {e}")))?;
    let key = vaultmesh_proto::auth::NodeKey::from_seed(seed);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{}", key.to_base64())?;
    f.sync_all()?;
    Ok(key)
}

/// Why a signing-key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read: {0}")]
    Unreadable(#[from] std::io::Error),
    #[error("not a key written by `vaultmesh-command-center keygen`")]
    NotAKey,
    #[error(
        "is the documentation's example key, whose private key is published (docs/PROTOCOL.md): make this Command Center's own with `vaultmesh-command-center keygen`"
    )]
    Published,
}

/// Reads a signing key as [`create_signing_key`] wrote it, changing nothing.
pub fn read_signing_key(
    path: &std::path::Path,
) -> Result<vaultmesh_proto::auth::NodeKey, KeyFileError> {
    let text = std::fs::read_to_string(path)?;
    let key =
        vaultmesh_proto::auth::NodeKey::from_base64(&text).map_err(|_| KeyFileError::NotAKey)?;
    if vaultmesh_proto::auth::is_published(&key.public_base64()) {
        return Err(KeyFileError::Published);
    }
    Ok(key)
}

/// `POST /api/commands` body.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    pub node_id: Uuid,
    pub action: String,
    #[serde(default)]
    pub args: serde_json::Value,
    /// Seconds the command stays valid (30..=3600, default 300).
    #[serde(default)]
    pub ttl_s: Option<u64>,
    #[serde(default)]
    pub issued_by: Option<String>,
}

/// `POST /api/commands`: check policy, sign, log, queue; 201 with the signed command.
pub async fn issue(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<SignedCommand>), ApiError> {
    let req: IssueRequest = parse_json_as(&headers, body?, "command")?;
    // A signed-in admin is the issuer, whatever the body claims.
    let issued_by = match identity
        .as_ref()
        .and_then(|axum::Extension(who)| who.author())
    {
        Some(name) => name.to_string(),
        None => req.issued_by.unwrap_or_else(|| "anonymous".into()),
    };
    let req = vaultmesh_engines::issue::IssueRequest {
        node_id: req.node_id,
        action: req.action,
        args: req.args,
        ttl: req.ttl_s.map_or(DEFAULT_TTL, Duration::from_secs),
        issued_by,
    };
    Ok((
        StatusCode::CREATED,
        Json(issue_for_admin(&state, req).await?),
    ))
}

/// Signs, logs and queues an admin's command (the API's or the console's), counted as
/// `admin` in `vaultmesh_commands_issued_total`; `503` without a signing key.
pub async fn issue_for_admin(
    state: &AppState,
    req: vaultmesh_engines::issue::IssueRequest,
) -> Result<SignedCommand, ApiError> {
    let key = state.cc_key.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "no command-signing key: start the Command Center with --signing-key (see `keygen`)"
                .into(),
        )
    })?;
    let signed =
        vaultmesh_engines::issue::issue(state.store.as_ref(), &state.policies, key, req).await?;
    state
        .metrics
        .commands_issued
        .with_label_values(&["admin"])
        .inc();
    Ok(signed)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    node_id: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/commands?node_id=&status=&limit=`: newest first.
pub async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    let Query(p) = params?;
    let node = p.node_id.as_deref().map(parse_node_id).transpose()?;
    let status = p
        .status
        .as_deref()
        .map(|s| {
            serde_json::from_value::<CommandStatus>(serde_json::Value::String(s.into()))
                .map_err(|_| ApiError::BadRequest(format!("status={s:?} is not one of issued, delivered, ok, failed, rejected, timeout")))
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::BadRequest(format!(
            "limit={limit} must be between 1 and 1000"
        )));
    }
    Ok(Json(state.store.commands(node, status, limit)))
}

/// The long-poll's query. Unknown parameters are ignored, as unknown members are in every agent
/// request (an agent newer than the Command Center may send more).
#[derive(Debug, Deserialize)]
pub struct PollParams {
    wait: Option<String>,
    /// Random, so two polls signed in the same second are not identical (and taken for a
    /// replay). Not otherwise used.
    #[allow(dead_code)]
    nonce: Option<String>,
}

/// `GET /api/agent/commands?wait=25s` (signed): the node's queued commands, at once if there are
/// any, else as soon as one is queued, else `[]` after `wait`.
pub async fn poll(
    State(state): State<AppState>,
    params: Result<Query<PollParams>, QueryRejection>,
    signed: Signed,
) -> Result<Json<Vec<SignedCommand>>, ApiError> {
    let Query(p) = params?;
    let wait = match p.wait.as_deref() {
        None => Duration::from_secs(25),
        Some(w) => vaultmesh_process::duration::parse(w)
            .map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?,
    };
    if wait > MAX_WAIT {
        return Err(ApiError::BadRequest(format!(
            "wait must be at most {}s",
            MAX_WAIT.as_secs()
        )));
    }
    let notify = state.store.command_notify(signed.node_id);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register interest before looking, so a command queued in between is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let taken = state.store.take_commands(signed.node_id).await?;
        if !taken.is_empty() {
            return Ok(Json(taken));
        }
        tokio::select! {
            _ = &mut notified => continue,
            _ = tokio::time::sleep_until(deadline) => return Ok(Json(Vec::new())),
            _ = state.shutdown.cancelled() => return Ok(Json(Vec::new())),
        }
    }
}

/// `POST /api/agent/receipts` (signed): verify the node's signature and the chain, log it.
pub async fn receipt(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.spend(
        signed.node_id,
        vaultmesh_engines::budget::Kind::Receipts,
        signed.body.len(),
    )?;
    let r: SignedReceipt = parse_json_as(&signed.headers, signed.body, "receipt")?;
    if r.receipt.node_id != signed.node_id {
        return Err(ApiError::Forbidden(format!(
            "receipt is for node {} but sent by node {}",
            r.receipt.node_id, signed.node_id
        )));
    }
    let binding = state.store.binding(signed.node_id).ok_or_else(|| {
        ApiError::Unauthorized(
            vaultmesh_engines::auth::Refusal::UnknownNode,
            "node is not enrolled".into(),
        )
    })?;
    r.verify(&binding.key)
        .map_err(|e| ApiError::UnprocessableEntity(format!("receipt signature: {e}")))?;
    let status = r.receipt.status;
    let outcome = state.store.record_receipt(r).await?;
    if !outcome.duplicate {
        let status = serde_json::to_value(status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        state.metrics.receipts.with_label_values(&[&status]).inc();
        if !outcome.chain_ok {
            state.metrics.receipt_chain_breaks.inc();
        }
    }
    Ok(Json(serde_json::json!({
        "accepted": true,
        "chain_ok": outcome.chain_ok,
        "duplicate": outcome.duplicate,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documentations_example_keys_are_refused_as_signing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cc.key");
        for seed in [[3u8; 32], [7u8; 32]] {
            let key = vaultmesh_proto::auth::NodeKey::from_seed(seed);
            std::fs::write(&file, key.to_base64()).unwrap();
            let refused = read_signing_key(&file).unwrap_err();
            assert!(matches!(refused, KeyFileError::Published), "{refused}");
            assert!(refused.to_string().contains("keygen"), "{refused}");
        }
        let own = vaultmesh_proto::auth::NodeKey::from_seed([42; 32]);
        std::fs::write(&file, own.to_base64()).unwrap();
        assert_eq!(
            read_signing_key(&file).unwrap().public_base64(),
            own.public_base64()
        );
    }
}
