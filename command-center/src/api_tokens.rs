//! Named API tokens for scripts, bots and the CLI: `POST|GET /api/api-tokens` and
//! `DELETE /api/api-tokens/{id}` (admin only), and how a request bearing one
//! (`Authorization: Bearer vmk_...`) is let in ([`ApiTokens::identify`]).
//!
//! A token has a name (the author of what it posts and the issuer of its commands), a role or
//! narrower scopes ([`crate::roles`]), and an expiry. Its secret is shown once, in the reply that
//! makes it; the store keeps its SHA-256 (`api_token_created` in `nodes.jsonl`). Revocation
//! takes effect at the next request. Its last use is known to the request by the running
//! Command Center and written to the log at most every
//! [`vaultmesh_store::tokens::USED_EVERY`]. Requests with a token are rate-limited per token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vaultmesh_engines::auth::Refusal;
use vaultmesh_store::Store;
use vaultmesh_store::tokens::{ApiToken, TokenState};

use crate::error::ApiError;
use crate::roles::{Grants, Identity, Permission, Role, Via};
use crate::server::AppState;

/// What every API token's secret starts with, so one is recognised in a config, a log or a leak
/// (and told from the shared `--admin-token`).
pub const SECRET_PREFIX: &str = "vmk_";
/// Longest name.
pub const NAME_MAX: usize = 64;
/// How long a token is accepted when the request does not say.
pub const DEFAULT_EXPIRES_IN: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);
/// The longest a token may be accepted.
pub const MAX_EXPIRES_IN: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);
/// The shortest.
pub const MIN_EXPIRES_IN: std::time::Duration = std::time::Duration::from_secs(60);
/// Names the Command Center itself writes as authors; no token may take one.
pub const RESERVED_NAMES: [&str; 6] = [
    "admin",
    "anonymous",
    "console",
    "orchestrator",
    "command-center",
    "system",
];

/// Body of `POST /api/api-tokens`: a name, and a role or scopes (one of the two).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// 1-64 of `A-Z a-z 0-9 . _ -`: the author of what the token posts.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Some of `read`, `events:write`, `commands:issue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// How long it is accepted: `"90d"` (the default), 1m to 366d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub name: String,
    pub role: Option<Role>,
    /// Scope names, checked (empty with a role).
    pub scopes: Vec<String>,
    pub expires_in: std::time::Duration,
}

impl CreateRequest {
    /// The request checked; the error names the field.
    pub fn check(self) -> Result<Create, String> {
        let name = self.name;
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(format!(
                "name: give the token a name of 1 to {NAME_MAX} characters (it authors what the token posts)"
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "name: {c:?} is not allowed; a token's name is letters, digits, '.', '_' and '-' (it cannot pass for an email or a node)"
            ));
        }
        if RESERVED_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "name: {name:?} is the Command Center's own author name; choose another"
            ));
        }
        // Nodes author their own events by id, Access service tokens by `<id>.access`.
        if uuid::Uuid::parse_str(&name).is_ok()
            || name.to_ascii_lowercase().ends_with(".access")
            || name.to_ascii_lowercase().starts_with("node")
                && uuid::Uuid::parse_str(
                    name.get(4..)
                        .unwrap_or_default()
                        .trim_start_matches(['-', '_', '.']),
                )
                .is_ok()
        {
            return Err(format!(
                "name: {name:?} could pass for a node or an Access service token; choose another"
            ));
        }
        let (role, scopes) = match (self.role, self.scopes) {
            (Some(r), None) => (
                Some(Role::parse(&r).map_err(|e| format!("role: {e}"))?),
                vec![],
            ),
            (None, Some(s)) => {
                let g = crate::roles::grants_of_scopes(&s)?;
                if g.has(Permission::Admin) {
                    return Err(
                        "scopes: admin is a role, not a scope; give \"role\": \"admin\"".into(),
                    );
                }
                (None, g.scopes().into_iter().map(String::from).collect())
            }
            (Some(_), Some(_)) => {
                return Err("role, scopes: give a role or scopes, not both".into());
            }
            (None, None) => {
                return Err(
                    "role: give the token a role (viewer, operator, admin) or scopes (read, events:write, commands:issue)"
                        .into(),
                );
            }
        };
        let expires_in = match self.expires_in.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_EXPIRES_IN,
            Some(text) => {
                let d = humantime::parse_duration(text).map_err(|e| {
                    format!(
                        "expires_in: {:?} is not a duration ({e}); write e.g. \"30d\" or \"12h\"",
                        text.chars().take(32).collect::<String>()
                    )
                })?;
                if d < MIN_EXPIRES_IN || d > MAX_EXPIRES_IN {
                    return Err(format!(
                        "expires_in: {text:?} is out of bounds: an API token is accepted for 1m to 366d"
                    ));
                }
                d
            }
        };
        Ok(Create {
            name,
            role,
            scopes,
            expires_in,
        })
    }
}

/// An API token as the admin API lists it: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    /// Its role, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// What it may do, as scopes (a role's too).
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    /// Its last use, if any.
    pub last_used_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`.
    pub state: TokenState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// Reply of `POST /api/api-tokens`: the token and its secret (this once).
#[derive(Clone, Serialize, Deserialize)]
pub struct Created {
    #[serde(flatten)]
    pub token: ApiTokenView,
    /// The secret: `Authorization: Bearer <secret>`. Shown in this reply only.
    pub secret: String,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("token", &self.token)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The grants a stored token has (none if its role or scopes no longer parse).
fn grants(t: &ApiToken) -> (Option<Role>, Grants) {
    match &t.role {
        Some(r) => Role::parse(r).map_or((None, Grants::NONE), |r| (Some(r), r.grants())),
        None => (
            None,
            crate::roles::grants_of_scopes(&t.scopes).unwrap_or(Grants::NONE),
        ),
    }
}

/// A token's last use seen here, and when a use was last written to the log.
#[derive(Debug, Clone, Copy)]
struct Uses {
    last: DateTime<Utc>,
    logged: DateTime<Utc>,
}

/// The API tokens of a running Command Center: the store's, each one's last use, and the rate
/// limit of requests that bear one.
pub struct ApiTokens {
    store: Arc<dyn Store>,
    /// Each token's uses seen here, by id.
    used: Mutex<HashMap<String, Uses>>,
    rate: vaultmesh_engines::limits::RateLimit,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokens").finish_non_exhaustive()
    }
}

impl ApiTokens {
    /// `rate` requests a second per token, `burst` at once.
    pub fn new(store: Arc<dyn Store>, rate: f64, burst: u32) -> ApiTokens {
        ApiTokens {
            store,
            used: Mutex::new(HashMap::new()),
            rate: vaultmesh_engines::limits::RateLimit::new(rate, burst),
        }
    }

    /// Whether a bearer credential is an API token (rather than the shared admin token).
    pub fn is_api_token(bearer: &str) -> bool {
        bearer.starts_with(SECRET_PREFIX)
    }

    /// The identity a presented token makes: `401` if it is unknown, expired or revoked (the
    /// holder is told which: they hold the secret), `429` past its rate.
    pub fn identify(&self, secret: &str) -> Result<Identity, ApiError> {
        // Refusals are logged (with the token's id, never its secret) by the refusal log.
        let refused = |why: &str| ApiError::Unauthorized(Refusal::ApiToken, why.to_string());
        let t = self
            .store
            .api_token_by_hash(&crate::tokens::hash(secret))
            .ok_or_else(|| refused("unknown API token"))?;
        // The rate first: a script still using a revoked token is slowed down too.
        let key = u128::from_str_radix(&t.id, 16).unwrap_or_default();
        self.rate.check(uuid::Uuid::from_u128(key))?;
        let now = Utc::now();
        match t.state(now) {
            TokenState::Active => {}
            TokenState::Revoked => {
                return Err(refused(&format!("API token {} was revoked", t.id)));
            }
            _ => return Err(refused(&format!("API token {} has expired", t.id))),
        }
        self.used(&t.id, now);
        let (role, grants) = grants(&t);
        Ok(Identity {
            name: t.name,
            role,
            grants,
            via: Via::ApiToken,
            token_id: Some(t.id),
        })
    }

    /// Whether token `id` is still accepted (an open event stream asks, and ends when not).
    pub fn active(&self, id: &str) -> bool {
        self.store
            .api_tokens()
            .iter()
            .any(|t| t.id == id && t.state(Utc::now()) == TokenState::Active)
    }

    /// Notes a use; writes `api_token_used` when the last one written is older than
    /// [`vaultmesh_store::tokens::USED_EVERY`] (in the background: the request does not wait).
    fn used(&self, id: &str, now: DateTime<Utc>) {
        let write = {
            let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
            let entry = used.entry(id.to_string()).or_insert(Uses {
                last: now,
                logged: DateTime::<Utc>::MIN_UTC,
            });
            entry.last = now;
            let due = now - entry.logged >= vaultmesh_store::tokens::USED_EVERY;
            if due {
                entry.logged = now;
            }
            due
        };
        if write {
            let store = Arc::clone(&self.store);
            let id = id.to_string();
            tokio::spawn(async move {
                if let Err(e) = store.api_token_used(&id, now).await {
                    tracing::warn!(token = %id, error = %e, "Cannot record an API token's use.");
                }
            });
        }
    }

    /// A token as listed: its last use is the latest of the log's and this process's.
    pub fn view(&self, t: &ApiToken, now: DateTime<Utc>) -> ApiTokenView {
        let seen = self
            .used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&t.id)
            .map(|u| u.last);
        let (role, grants) = grants(t);
        ApiTokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            role,
            scopes: grants.scopes().into_iter().map(String::from).collect(),
            created_at: t.created_at,
            created_by: t.created_by.clone(),
            expires_at: t.expires_at,
            last_used_at: t.last_used_at.max(seen),
            state: t.state(now),
            revoked_at: t.revoked.as_ref().map(|r| r.0),
            revoked_by: t.revoked.as_ref().map(|r| r.1.clone()),
        }
    }
}

/// `POST /api/api-tokens`: `201` with the token and its secret (this once).
pub async fn post(
    State(state): State<AppState>,
    identity: Option<axum::Extension<Identity>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    // A token makes no token: revoking a leaked admin token would leave its children working.
    if let Some(axum::Extension(who)) = &identity
        && who.via == Via::ApiToken
    {
        return Err(ApiError::Forbidden(format!(
            "API tokens are made by a person signed in or with the admin token, not by another API token ({} is one)",
            who.name
        )));
    }
    let req: CreateRequest = crate::api::parse_json_as(&headers, body?, "API token request")?;
    let c = req.check().map_err(ApiError::UnprocessableEntity)?;
    let by = crate::api::author(identity, "anonymous");
    let secret = crate::tokens::new_secret(SECRET_PREFIX)
        .map_err(|e| ApiError::Internal(format!("no randomness for an API token: {e}")))?;
    let sha256 = crate::tokens::hash(&secret);
    let now = Utc::now();
    let token = ApiToken {
        id: sha256[..16].to_string(),
        sha256,
        name: c.name,
        role: c.role.map(|r| r.as_str().to_string()),
        scopes: c.scopes,
        created_at: now,
        created_by: by.clone(),
        expires_at: now
            + chrono::Duration::from_std(c.expires_in).unwrap_or(chrono::Duration::days(90)),
        last_used_at: None,
        revoked: None,
    };
    let token = state.store.create_api_token(token).await?;
    tracing::info!(token = %token.id, name = %token.name, %by, expires_at = %token.expires_at.to_rfc3339(), "API token created.");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            token: state.admin.api_tokens.view(&token, now),
            secret,
        }),
    ))
}

/// `GET /api/api-tokens`: every API token, newest first (never a secret or hash).
pub async fn get(State(state): State<AppState>) -> Json<Vec<ApiTokenView>> {
    let now = Utc::now();
    Json(
        state
            .store
            .api_tokens()
            .iter()
            .map(|t| state.admin.api_tokens.view(t, now))
            .collect(),
    )
}

/// `DELETE /api/api-tokens/{id}`: the token is refused from its next request on; `200` with it
/// as it stands when it was revoked already.
pub async fn delete(
    State(state): State<AppState>,
    identity: Option<axum::Extension<Identity>>,
    Path(id): Path<String>,
) -> Result<Json<ApiTokenView>, ApiError> {
    let id = id.to_ascii_lowercase();
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::NotFound(format!(
            "no API token {:?} (an id is 16 hex digits, as GET /api/api-tokens lists)",
            id.chars().take(32).collect::<String>()
        )));
    }
    let by = crate::api::author(identity, "anonymous");
    let t = state.store.revoke_api_token(&id, by.clone()).await?;
    tracing::warn!(token = %t.id, name = %t.name, %by, "API token revoked.");
    Ok(Json(state.admin.api_tokens.view(&t, Utc::now())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> Result<Create, String> {
        serde_json::from_value::<CreateRequest>(v).unwrap().check()
    }

    #[test]
    fn a_request_needs_a_plain_name_and_a_role_or_scopes() {
        let c = req(serde_json::json!({"name": "deploy-bot", "scopes": ["events:write"]})).unwrap();
        assert_eq!(
            (c.role, c.scopes.as_slice()),
            (None, &["events:write".to_string()][..])
        );
        assert_eq!(c.expires_in, DEFAULT_EXPIRES_IN);
        let c =
            req(serde_json::json!({"name": "ci", "role": "viewer", "expires_in": "30d"})).unwrap();
        assert_eq!(
            (c.role, c.expires_in.as_secs()),
            (Some(Role::Viewer), 30 * 86_400)
        );
        for (body, want) in [
            (
                serde_json::json!({"name": "", "role": "viewer"}),
                "name: give the token a name",
            ),
            (
                serde_json::json!({"name": "bob@example.com", "role": "viewer"}),
                "name: '@' is not allowed",
            ),
            (
                serde_json::json!({"name": "Admin", "role": "viewer"}),
                "the Command Center's own author name",
            ),
            (
                serde_json::json!({"name": "70e00000-0000-4000-8000-000000000001", "role": "viewer"}),
                "could pass for a node",
            ),
            (
                serde_json::json!({"name": "node-70e00000-0000-4000-8000-000000000001", "role": "viewer"}),
                "could pass for a node",
            ),
            (
                serde_json::json!({"name": "3f2a9c0d1b2e4f56.access", "role": "viewer"}),
                "Access service token",
            ),
            (
                serde_json::json!({"name": "x"}),
                "role: give the token a role",
            ),
            (
                serde_json::json!({"name": "x", "role": "viewer", "scopes": ["read"]}),
                "not both",
            ),
            (
                serde_json::json!({"name": "x", "role": "oprator"}),
                "did you mean \"operator\"",
            ),
            (
                serde_json::json!({"name": "x", "scopes": ["admin"]}),
                "admin is a role",
            ),
            (
                serde_json::json!({"name": "x", "scopes": ["events:wirte"]}),
                "did you mean \"events:write\"",
            ),
            (
                serde_json::json!({"name": "x", "role": "viewer", "expires_in": "2y"}),
                "out of bounds",
            ),
            (
                serde_json::json!({"name": "x", "role": "viewer", "expires_in": "soon"}),
                "is not a duration",
            ),
        ] {
            let e = req(body.clone()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        assert!(
            serde_json::from_value::<CreateRequest>(
                serde_json::json!({"name": "x", "rol": "viewer"})
            )
            .is_err()
        );
    }
}
