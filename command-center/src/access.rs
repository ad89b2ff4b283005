//! Admin authentication: Cloudflare Access, or a session after an OpenID Connect sign-in
//! ([`crate::oidc`]), or a bearer token, or loopback only — tried in that order by
//! [`admin_auth`].
//!
//! Behind a Cloudflare Tunnel every request comes from 127.0.0.1, so the Command Center checks
//! who is asking itself. With Access configured, every admin route (everything but
//! `/api/agent/*`, `/healthz` and `/assets/*`) needs a valid `Cf-Access-Jwt-Assertion`:
//!
//! - RS256 only (no `none`, no HMAC — the key is public);
//! - `kid` found in the team's certs (`https://<team>/cdn-cgi/access/certs`, or `jwks_url`, or a
//!   `certs_file`), fetched in the background at start and hourly ([`AccessVerifier::run`]);
//!   an unknown `kid` refetches them (at most every 10 s). Requests with a known `kid` never
//!   wait for a fetch;
//! - `aud` holds one of the configured tags; `iss` is `https://<team>`; `exp`/`nbf` checked with
//!   30 s of leeway.
//!
//! The token's `email` (or `common_name`, for service tokens) becomes the author of events and
//! the issuer of commands. Refusals are `401` with a reason that never echoes the token.
//! Without Access, an admin bearer token (compared in constant time) may guard the routes; with
//! neither, `serve` refuses any listener that is not loopback, and admin requests that carry
//! Cloudflare's headers (a tunnel publishing the loopback listener) are refused with `403`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use vaultmesh_engines::auth::Refusal;

use crate::error::ApiError;

/// The header Cloudflare Access puts the user's token in.
pub const HEADER: &str = "cf-access-jwt-assertion";
/// Least time between two fetches of the certs.
const REFRESH_MIN: Duration = Duration::from_secs(10);
/// Certs are refetched this often anyway (Access rotates its keys).
const REFRESH_MAX: Duration = Duration::from_secs(3600);
/// After a failed fetch, the next one is this much later.
const RETRY: Duration = Duration::from_secs(30);

/// The Cloudflare Access flags of `serve`; [`AccessArgs::config`] is the configuration they
/// make, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct AccessArgs {
    /// Cloudflare Access team domain (myteam.cloudflareaccess.com): admin routes then need a
    /// valid Cf-Access-Jwt-Assertion.
    #[arg(long, env = "VAULTMESH_ACCESS_TEAM_DOMAIN", requires = "access_aud")]
    pub access_team_domain: Option<String>,
    /// Access application AUD tag(s); repeat, or separate with commas.
    #[arg(long, env = "VAULTMESH_ACCESS_AUD", value_delimiter = ',')]
    pub access_aud: Vec<String>,
    /// Where to fetch the Access certs (default https://<team>/cdn-cgi/access/certs).
    #[arg(long, env = "VAULTMESH_ACCESS_JWKS_URL", value_name = "URL")]
    pub access_jwks_url: Option<String>,
    /// Read the Access certs from a file instead (air-gapped installs).
    #[arg(long, env = "VAULTMESH_ACCESS_CERTS_FILE", value_name = "FILE")]
    pub access_certs_file: Option<PathBuf>,
}

impl AccessArgs {
    /// Access in front of the admin routes, when a team domain is given.
    pub fn config(&self) -> Option<AccessConfig> {
        self.access_team_domain
            .clone()
            .map(|team_domain| AccessConfig {
                team_domain,
                aud: self.access_aud.clone(),
                jwks_url: self.access_jwks_url.clone(),
                certs_file: self.access_certs_file.clone(),
            })
    }
}

/// Cloudflare Access settings.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// `<team>.cloudflareaccess.com`.
    pub team_domain: String,
    /// Application AUD tags; a token must carry one.
    pub aud: Vec<String>,
    /// Where the certs are (default `https://<team>/cdn-cgi/access/certs`).
    pub jwks_url: Option<String>,
    /// Certs from a file instead (air-gapped installs).
    pub certs_file: Option<PathBuf>,
}

pub use crate::roles::Identity;
use crate::roles::{Role, RoleMap, Via};

/// Who a verified token names: an email (or a service token's common name) and the groups its
/// `groups` claim lists (for the roles file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    common_name: Option<String>,
    /// The identity provider's groups: top level, or under `custom` (where Access puts the
    /// claims an OIDC or SAML provider passes on).
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    custom: Option<CustomClaims>,
}

#[derive(Debug, Deserialize)]
struct CustomClaims {
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kid: String,
    #[serde(default)]
    kty: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
}

/// Verifies Access tokens against the team's certs.
pub struct AccessVerifier {
    config: AccessConfig,
    issuer: String,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the certs were last fetched (or tried): the rate limit of [`REFRESH_MIN`].
    fetched: Mutex<Option<Instant>>,
    /// Held across a fetch, so there is one at a time. Verifying with a known key never
    /// takes it, so a slow certs endpoint holds up only requests that need new keys.
    fetching: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

impl std::fmt::Debug for AccessVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessVerifier")
            .field("issuer", &self.issuer)
            .field("aud", &self.config.aud)
            .finish_non_exhaustive()
    }
}

impl AccessVerifier {
    pub fn new(config: AccessConfig) -> Result<AccessVerifier, String> {
        if config.team_domain.trim().is_empty() || config.team_domain.contains(['/', ' ']) {
            return Err(
                "--access-team-domain: give the team domain, e.g. myteam.cloudflareaccess.com"
                    .into(),
            );
        }
        if config.aud.is_empty() {
            return Err("--access-aud: give the application's AUD tag (one or more)".into());
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(AccessVerifier {
            issuer: format!("https://{}", config.team_domain),
            config,
            keys: RwLock::new(HashMap::new()),
            fetched: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            http,
        })
    }

    fn certs_url(&self) -> String {
        self.config
            .jwks_url
            .clone()
            .unwrap_or_else(|| format!("https://{}/cdn-cgi/access/certs", self.config.team_domain))
    }

    /// Keeps the certs fresh, off the request path: fetches them now, then every
    /// [`REFRESH_MAX`] (Access rotates its keys), or every [`RETRY`] while a fetch fails.
    /// Requests verify with the keys already known meanwhile, however slow the fetch.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let next = {
                let _one = self.fetching.lock().await;
                if self.fetch().await {
                    REFRESH_MAX
                } else {
                    RETRY
                }
            };
            tokio::select! {
                () = tokio::time::sleep(next) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// For a token whose `kid` is not known: fetches the certs (Access may have rotated its
    /// keys) unless that was tried less than [`REFRESH_MIN`] ago. Waits for a fetch already
    /// in flight instead of starting another. Only such requests wait here: a request with a
    /// known `kid` never takes [`AccessVerifier::fetching`].
    async fn refresh_for_unknown_kid(&self) {
        let _one = self.fetching.lock().await;
        let recent = self
            .fetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < REFRESH_MIN);
        if !recent {
            self.fetch().await;
        }
    }

    /// Fetches the certs and replaces the known keys with them; keeps the old keys if the
    /// fetch fails. Whether it succeeded. Callers hold [`AccessVerifier::fetching`].
    async fn fetch(&self) -> bool {
        *self.fetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let body = match &self.config.certs_file {
            Some(path) => std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
            None => match self.http.get(self.certs_url()).send().await {
                Ok(r) if r.status().is_success() => r
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            },
        };
        let parsed =
            body.and_then(|b| serde_json::from_slice::<Jwks>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(jwks) => {
                let mut keys = HashMap::new();
                for k in jwks.keys.iter().filter(|k| k.kty == "RSA") {
                    if let Ok(dk) = DecodingKey::from_rsa_components(&k.n, &k.e) {
                        keys.insert(k.kid.clone(), dk);
                    }
                }
                tracing::info!(keys = keys.len(), "Cloudflare Access certs loaded.");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot load the Cloudflare Access certs; keeping the old ones.");
                false
            }
        }
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kid)
            .cloned()
    }

    /// The identity in a valid token; a reason otherwise (never the token's contents).
    pub async fn verify(&self, token: &str) -> Result<Claimed, String> {
        let header = decode_header(token).map_err(|_| "malformed token".to_string())?;
        if header.alg != Algorithm::RS256 {
            return Err(format!(
                "algorithm {:?} is not accepted (RS256 only)",
                header.alg
            ));
        }
        let kid = header.kid.ok_or("the token names no key (kid)")?;
        let key = match self.key(&kid) {
            Some(k) => k,
            None => {
                self.refresh_for_unknown_kid().await;
                self.key(&kid)
                    .ok_or("the token's key is not one of the team's keys")?
            }
        };
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&self.config.aud);
        v.set_issuer(&[&self.issuer]);
        v.leeway = 30;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => "the token has expired".to_string(),
                K::ImmatureSignature => "the token is not valid yet".to_string(),
                K::InvalidAudience => "the token is for another application (aud)".to_string(),
                K::InvalidIssuer => "the token is from another team (iss)".to_string(),
                K::InvalidSignature => "the token's signature does not verify".to_string(),
                K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
                _ => "invalid token".to_string(),
            }
        })?;
        let mut groups = data.claims.groups;
        if let Some(custom) = data.claims.custom {
            groups.extend(custom.groups);
        }
        data.claims
            .email
            .or(data.claims.common_name)
            .filter(|s| plain_name(s))
            .map(|name| Claimed { name, groups })
            .ok_or_else(|| "the token names no user (email or common_name)".to_string())
    }
}

/// Whether an identity's name can stand as an author: 1-128 characters, none of them a
/// control, bidirectional or invisible one.
pub fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && vaultmesh_proto::text::first_deceptive(s, &[]).is_none()
}

/// Whether `path` is outside the admin surface (agents sign their own requests).
/// The sign-in routes (`/auth/*`) are public too: they are how a browser gets in.
pub fn is_public(path: &str) -> bool {
    path.starts_with("/api/agent/")
        || path == "/healthz"
        || path.starts_with("/assets/")
        || crate::oidc::is_sign_in(path)
}

/// Equality that takes the same time whatever the inputs (compares digests).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// What the admin gate needs of the server's state (which provides it through `FromRef`): how
/// admins authenticate.
#[derive(Debug, Clone)]
pub struct AdminAuth {
    /// Cloudflare Access verification of admin requests, when configured.
    pub access: Option<Arc<AccessVerifier>>,
    /// Admin bearer token, when configured (and Access is not).
    pub admin_token: Option<AdminToken>,
    /// Which role each signed-in identity gets (`--roles`); without one, every identity is an
    /// admin.
    pub roles: Option<Arc<RoleMap>>,
    /// Named API tokens (`Authorization: Bearer vmk_...`), whatever else is configured.
    pub api_tokens: Arc<crate::api_tokens::ApiTokens>,
    /// OpenID Connect sign-in and its sessions, when `--oidc-issuer` is configured.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
}

impl AdminAuth {
    /// The identity a verified sign-in makes: its role from the roles file (or admin without
    /// one); a `403` if the file gives it none.
    pub fn identity(&self, claimed: Claimed, via: Via) -> Result<Identity, ApiError> {
        let role = match &self.roles {
            None => Some(Role::Admin),
            Some(map) => map.role_for(&claimed.name, &claimed.groups),
        };
        role.map(|r| Identity::with_role(claimed.name.clone(), r, via))
            .ok_or_else(|| {
                ApiError::NotAllowed(format!(
                    "every route needs at least the viewer role; {} has no role here: the roles file names neither the identity nor any of its groups, and its default is none",
                    claimed.name
                ))
            })
    }
}

/// The admin gate. The ways in, in order; the first one a request claims decides, and a claim
/// that fails is refused (it does not fall through to the next way):
///
/// 1. a Cloudflare Access token (`Cf-Access-Jwt-Assertion`), when Access is configured — it
///    takes precedence over everything below;
/// 2. a session cookie from an OpenID Connect sign-in, when `--oidc-issuer` is configured;
/// 3. `Authorization: Bearer` with the shared `--admin-token` (not with Access).
///
/// A request that claims none is refused ([`unauthenticated`]) unless no way in is configured
/// at all (a loopback-only server).
pub async fn admin_auth(
    State(state): State<Arc<AdminAuth>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if is_public(req.uri().path()) {
        return Ok(next.run(req).await);
    }
    // A session rotated on this request: its new cookie goes out with the response.
    let mut set_cookie = None;
    // A named API token speaks for itself, whatever else is configured.
    let who = if let Some(secret) =
        bearer(req.headers()).filter(|b| crate::api_tokens::ApiTokens::is_api_token(b))
    {
        Some(state.api_tokens.identify(secret)?)
    } else if let Some(access) = &state.access
        && let Some(token) = req.headers().get(HEADER)
    {
        let token = token.to_str().map_err(|_| {
            ApiError::Unauthorized(Refusal::Access, "Cloudflare Access: malformed token".into())
        })?;
        Some(by_access(&state, access, token).await?)
    } else if let Some(oidc) = &state.oidc
        && let Some(id) = oidc.session_id(req.headers())
    {
        match oidc.sessions.lookup(id) {
            Ok(found) => {
                set_cookie = found.rotated.map(|new| oidc.session_cookie(&new));
                Some(found.identity)
            }
            Err(ended) => {
                return Ok(unauthenticated(&state, &req, Some(ended))
                    .expect("a session ends only where sign-in is configured"));
            }
        }
    } else if state.access.is_none()
        && let Some(secret) = &state.admin_token
        && let Some(given) = bearer(req.headers())
    {
        if !same_secret(given, &secret.0) {
            return Err(ApiError::Unauthorized(
                Refusal::AdminToken,
                "wrong admin token".into(),
            ));
        }
        Some(Identity::with_role("admin", Role::Admin, Via::AdminToken))
    } else {
        None
    };
    match who {
        Some(who) => {
            req.extensions_mut().insert(who);
        }
        None => match unauthenticated(&state, &req, None) {
            Some(refusal) => return Ok(refusal),
            // No way in is configured: a loopback-only server, where whoever reaches it may
            // do everything.
            None => {
                req.extensions_mut().insert(Identity::loopback());
            }
        },
    }
    let mut res = next.run(req).await;
    if let Some(cookie) = set_cookie {
        res.headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    Ok(res)
}

/// Way in 1: a Cloudflare Access token.
async fn by_access(
    state: &AdminAuth,
    access: &AccessVerifier,
    token: &str,
) -> Result<Identity, ApiError> {
    let claimed = access.verify(token).await.map_err(|reason| {
        ApiError::Unauthorized(Refusal::Access, format!("Cloudflare Access: {reason}"))
    })?;
    state.identity(claimed, Via::Access)
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// A request that claims no way in (or a session that has ended): a browser loading a page is
/// sent to sign in when OpenID Connect is configured; anything else gets a JSON `401` saying
/// how to authenticate. `None` (let in without an identity) only on a server with no way in
/// configured (loopback only), and not for requests that came through Cloudflare.
fn unauthenticated(
    state: &AdminAuth,
    req: &Request,
    ended: Option<crate::oidc::sessions::Ended>,
) -> Option<Response> {
    refusal(state, req, ended).err().map(|r| match r {
        Unauthenticated::Page(res) => *res,
        Unauthenticated::Error(e) => axum::response::IntoResponse::into_response(e),
    })
}

/// How a request without a way in is answered.
enum Unauthenticated {
    /// Sent to sign in.
    Page(Box<Response>),
    Error(ApiError),
}

impl From<ApiError> for Unauthenticated {
    fn from(e: ApiError) -> Self {
        Unauthenticated::Error(e)
    }
}

fn refusal(
    state: &AdminAuth,
    req: &Request,
    ended: Option<crate::oidc::sessions::Ended>,
) -> Result<(), Unauthenticated> {
    if let Some(oidc) = &state.oidc {
        if crate::oidc::wants_page(req.method(), req.headers()) {
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", axum::http::uri::PathAndQuery::as_str);
            let mut res =
                axum::response::IntoResponse::into_response(axum::http::StatusCode::SEE_OTHER);
            let location = axum::http::HeaderValue::from_str(&crate::oidc::login_location(target))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            res.headers_mut()
                .insert(axum::http::header::LOCATION, location);
            if ended.is_some() {
                res.headers_mut()
                    .append(axum::http::header::SET_COOKIE, oidc.clear_session_cookie());
            }
            // Counted and logged like any other refusal.
            res.extensions_mut().insert(crate::error::Rejected {
                reason: "unauthorized",
                why: Refusal::SignIn.as_str(),
                detail: "no session: sent to sign in".into(),
            });
            return Err(Unauthenticated::Page(Box::new(res)));
        }
        if let Some(ended) = ended {
            return Err(Unauthenticated::Error(ApiError::Unauthorized(
                Refusal::SignIn,
                format!("{ended}; sign in again at /auth/login"),
            )));
        }
    }
    if state.access.is_some() {
        return Err(ApiError::Unauthorized(
            Refusal::Access,
            "sign in through Cloudflare Access (no Cf-Access-Jwt-Assertion header)".into(),
        )
        .into());
    }
    if state.oidc.is_some() {
        return Err(ApiError::Unauthorized(
            Refusal::SignIn,
            if state.admin_token.is_some() {
                "sign in at /auth/login (a session cookie), or send the admin bearer token"
            } else {
                "sign in at /auth/login (a session cookie)"
            }
            .into(),
        )
        .into());
    }
    if state.admin_token.is_some() {
        return Err(ApiError::Unauthorized(
            Refusal::AdminToken,
            "an admin bearer token is required".into(),
        )
        .into());
    }
    if let Some(header) = crate::guard::through_cloudflare(req.headers()) {
        // No authentication is safe on loopback only; a tunnel publishing the loopback
        // listener would hand the admin routes to the Internet.
        return Err(ApiError::from(crate::guard::Refused::Unauthenticated { header }).into());
    }
    Ok(())
}

/// A secret that never prints.
#[derive(Clone)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}
