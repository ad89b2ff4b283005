//! The enrollment-token routes: `POST|GET /api/enroll-tokens` and
//! `DELETE /api/enroll-tokens/{id}` (admin routes), what the console's Add node page shares with
//! them (mint, revoke, list as a signed-in identity), and which token an enrollment presents —
//! one of the configuration's (`--enroll-token`, as before) or a minted one ([`crate::tokens`]).
//!
//! Every refusal of a minted token — unknown, expired, used up, revoked — answers the agent the
//! same `401 enrollment token is not valid`; only the Command Center's own log says which (by
//! the token's id, never its secret).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use vaultmesh_engines::auth::Refusal;
use vaultmesh_store::tokens::{NewToken, TokenState, TokenUse};

use crate::error::ApiError;
use crate::server::AppState;
use crate::tokens::{Mint, MintError, MintRequest, Minted, NOT_VALID, TokenView, hash};

impl From<MintError> for ApiError {
    fn from(e: MintError) -> Self {
        ApiError::UnprocessableEntity(e.to_string())
    }
}

/// The Command Center's URL as the admin reached it ([`crate::tokens::cc_url`]).
pub fn cc_url(headers: &HeaderMap) -> String {
    crate::tokens::cc_url(headers.get(header::HOST).and_then(|v| v.to_str().ok()))
}

/// Mints a token as `by` asked; the reply carries its secret and install line.
pub async fn mint(
    state: &AppState,
    m: Mint,
    by: String,
    cc_url: String,
) -> Result<Minted, ApiError> {
    let secret = crate::tokens::new_secret(crate::tokens::SECRET_PREFIX)
        .map_err(|e| ApiError::Internal(format!("no randomness for an enrollment token: {e}")))?;
    let sha256 = hash(&secret);
    let new = NewToken {
        id: sha256[..16].to_string(),
        sha256,
        name: m.name,
        by: by.clone(),
        expires_at: Utc::now()
            + chrono::Duration::from_std(m.expires_in).unwrap_or(chrono::Duration::days(1)),
        uses: m.uses,
    };
    let token = state.store.create_token(new).await?;
    tracing::info!(token = %token.id, %by, uses = token.uses, expires_at = %token.expires_at.to_rfc3339(), "Enrollment token minted.");
    let cc_public_key = state.cc_key.as_ref().map(|k| k.public_base64());
    Ok(Minted {
        install: crate::tokens::install_line(&cc_url, &secret, cc_public_key.as_deref()),
        token: TokenView::of(&token, Utc::now()),
        secret,
        cc_url,
        cc_public_key,
    })
}

/// Revokes a token by id as `by`; `404` for an unknown id, and `200` with the token as it
/// stands for one revoked already (idempotent).
pub async fn revoke(state: &AppState, id: &str, by: String) -> Result<TokenView, ApiError> {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::NotFound(format!(
            "no enrollment token {:?} (an id is 16 hex digits, as GET /api/enroll-tokens lists)",
            id.chars().take(32).collect::<String>()
        )));
    }
    let t = state.store.revoke_token(id, by.clone()).await?;
    tracing::warn!(token = %t.id, %by, "Enrollment token revoked.");
    Ok(TokenView::of(&t, Utc::now()))
}

/// Every minted token, newest first.
pub fn list(state: &AppState) -> Vec<TokenView> {
    let now = Utc::now();
    state
        .store
        .tokens()
        .iter()
        .map(|t| TokenView::of(t, now))
        .collect()
}

/// Which token `presented` is: a minted one that is neither expired nor revoked (its uses are
/// checked with the enrollment, which takes one), else one of the configuration's, refused as
/// before. Every minted refusal is [`NOT_VALID`], as an unknown token's; the log says why.
pub fn matching(
    state: &AppState,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<TokenUse, ApiError> {
    if let Some(t) = state.store.token_by_hash(&hash(presented)) {
        return match t.state(now) {
            s @ (TokenState::Expired | TokenState::Revoked) => Err(refused(&t.id, s)),
            TokenState::Active | TokenState::UsedUp => Ok(TokenUse::Minted { id: t.id }),
        };
    }
    let t = state.tokens.matching(presented, now)?;
    Ok(TokenUse::Configured {
        id: t.id.clone(),
        single_use: t.single_use,
    })
}

/// The refusal of minted token `id` for being `state`: said in the log, not to the agent.
pub fn refused(id: &str, state: TokenState) -> ApiError {
    tracing::warn!(token = %id, state = state.as_str(), "Enrollment refused: the minted token is not active.");
    ApiError::Unauthorized(Refusal::BadToken, NOT_VALID.into())
}

/// `POST /api/enroll-tokens`: `201` with the token, its secret (this once) and its install line.
pub async fn post(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Minted>), ApiError> {
    let req: MintRequest = crate::api::parse_json_as(&headers, body?, "enrollment token request")?;
    let m = req.check()?;
    let minted = mint(
        &state,
        m,
        crate::api::author(identity, "anonymous"),
        cc_url(&headers),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(minted)))
}

/// `GET /api/enroll-tokens`: every minted token, newest first (never a secret or hash).
pub async fn get(State(state): State<AppState>) -> Json<Vec<TokenView>> {
    Json(list(&state))
}

/// `DELETE /api/enroll-tokens/{id}`: the token is refused from now on.
pub async fn delete(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    Ok(Json(
        revoke(&state, &id, crate::api::author(identity, "anonymous")).await?,
    ))
}
