//! Sign-in without Cloudflare Access: OpenID Connect (authorization code flow with PKCE) against
//! any provider, then a session cookie.
//!
//! The protocol is the `openidconnect` crate's: discovery, the provider's keys (JWKS), the code
//! exchange and every check of the ID token (signature, `iss`, `aud`, `exp`, `nonce`). This module
//! keeps what a sign-in needs between its two legs and the sessions that follow it:
//!
//! - `GET /auth/login?next=/path` keeps a random `state`, `nonce` and PKCE verifier server-side
//!   ([`PENDING_FOR`], single use, at most [`PENDING_MAX`] at once, the oldest dropped first), binds
//!   the `state` to the browser with a short-lived `Lax` cookie ([`LOGIN_COOKIE`]: a callback
//!   whose `state` the browser did not start is refused, against login CSRF), and redirects to
//!   the provider. `next` must be a local path ([`local_path`]): no open redirect.
//! - `GET /auth/callback` takes the `state` (once), exchanges the code with the PKCE verifier and
//!   the client secret, verifies the ID token, maps its `email` and groups claim to a role
//!   ([`crate::access::AdminAuth::identity`]) and starts a session ([`sessions`]). It answers with
//!   a page that moves on to `next` itself rather than a redirect: a `SameSite=Strict` cookie is
//!   not sent on a redirect that continues a navigation the provider's site started.
//! - `POST /auth/logout` ends the session server-side and clears the cookie.
//!
//! Discovery runs in the background ([`Oidc::run`]): a provider that is down when the Command
//! Center starts does not keep the fleet's ingest down. Until it has been reached,
//! `/auth/login` answers `503`; it is retried with back-off and refreshed hourly (the provider
//! rotates its keys).

pub mod http;
pub mod sessions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use vaultmesh_engines::auth::Refusal;
use vaultmesh_process::duration;

use crate::access::{AdminAuth, Claimed};
use crate::error::ApiError;
use crate::roles::Via;

/// The session cookie's name over plain HTTP (a loopback `--public-url`).
pub const SESSION_COOKIE: &str = "vaultmesh_session";
/// The session cookie's name over HTTPS: the `__Host-` prefix makes the browser refuse it
/// unless it is `Secure`, host-only and `Path=/`, so no sibling subdomain can plant one.
pub const SESSION_COOKIE_SECURE: &str = "__Host-vaultmesh_session";
/// The cookie binding a sign-in's `state` to the browser that started it (over plain HTTP).
pub const LOGIN_COOKIE: &str = "vaultmesh_login";
/// The same over HTTPS: `__Host-`, so no sibling subdomain can plant a state of its own (and
/// sign the browser in as someone else).
pub const LOGIN_COOKIE_SECURE: &str = "__Host-vaultmesh_login";
/// How long a started sign-in may take.
pub const PENDING_FOR: Duration = Duration::from_secs(600);
/// Sign-ins in progress at once (the oldest is dropped beyond).
pub const PENDING_MAX: usize = 10_000;
/// Longest `next` accepted.
const NEXT_MAX: usize = 2048;
/// Discovery is refreshed this often (the provider's keys rotate).
const REFRESH: Duration = Duration::from_secs(3600);
/// First retry after a failed discovery; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Least time between two discoveries forced by an ID token signed with an unknown key.
const REFRESH_MIN: Duration = Duration::from_secs(10);

/// Whether `path` is one of the sign-in routes (outside the admin gate, inside the host check).
pub fn is_sign_in(path: &str) -> bool {
    path.starts_with("/auth/")
}

/// The OpenID Connect flags of `serve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct OidcArgs {
    /// OpenID Connect provider (its issuer URL, e.g. https://accounts.example.com): browsers
    /// without Cloudflare Access sign in there and get a session cookie.
    #[arg(long, env = "VAULTMESH_OIDC_ISSUER", value_name = "URL", requires_all = ["oidc_client_id", "oidc_client_secret"])]
    pub oidc_issuer: Option<String>,
    /// The client id registered with the provider.
    #[arg(long, env = "VAULTMESH_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,
    /// The client secret registered with the provider (never logged).
    #[arg(
        long,
        env = "VAULTMESH_OIDC_CLIENT_SECRET",
        hide_env_values = true,
        requires = "oidc_issuer"
    )]
    pub oidc_client_secret: Option<String>,
    /// Where admins open the console (https://cc.example.com): sign-in redirects back to
    /// <URL>/auth/callback. Default: the console_url of --notify-config.
    #[arg(long, env = "VAULTMESH_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Scopes asked of the provider (comma-separated; must include openid).
    #[arg(
        long,
        env = "VAULTMESH_OIDC_SCOPES",
        value_delimiter = ',',
        default_value = "openid,email,profile"
    )]
    pub oidc_scopes: Vec<String>,
    /// The ID token claim listing the user's groups (for --roles).
    #[arg(long, env = "VAULTMESH_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// A session unused this long ends.
    #[arg(long, env = "VAULTMESH_OIDC_SESSION_IDLE", default_value = "8h", value_parser = duration::parse_nonzero)]
    pub oidc_session_idle: Duration,
    /// A session ends this long after sign-in, however active.
    #[arg(long, env = "VAULTMESH_OIDC_SESSION_LIFETIME", default_value = "7d", value_parser = duration::parse_nonzero)]
    pub oidc_session_lifetime: Duration,
    /// Sessions kept at once; beyond, the least recently used ends.
    #[arg(long, env = "VAULTMESH_OIDC_MAX_SESSIONS", default_value_t = 10_000)]
    pub oidc_max_sessions: usize,
    /// Accept an ID token without an `email_verified` claim (providers such as Entra ID omit
    /// it): only for a provider whose users cannot set their own address.
    #[arg(long, env = "VAULTMESH_OIDC_TRUST_EMAIL")]
    pub oidc_trust_email: bool,
}

/// Checked OpenID Connect settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    /// Debug prints it redacted.
    pub client_secret: ClientSecret,
    /// `<public URL>/auth/callback`.
    pub redirect: RedirectUrl,
    /// Whether cookies are `Secure` (the public URL is https).
    pub secure: bool,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub limits: sessions::Limits,
    /// `--oidc-trust-email`.
    pub trust_email: bool,
}

/// Whether `host` is a loopback name (plain HTTP is accepted there only).
fn loopback_host(url: &openidconnect::url::Url) -> bool {
    match url.host() {
        Some(openidconnect::url::Host::Domain(d)) => d == "localhost",
        Some(openidconnect::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(openidconnect::url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An http(s) URL, https unless on loopback, without query or fragment.
fn web_url(flag: &str, text: &str) -> Result<openidconnect::url::Url, String> {
    let url = openidconnect::url::Url::parse(text)
        .map_err(|e| format!("{flag} {text:?}: not a URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if loopback_host(&url) => {}
        "http" => {
            return Err(format!(
                "{flag} {text}: must be https (plain http only on localhost/127.0.0.1)"
            ));
        }
        other => return Err(format!("{flag} {text}: scheme {other:?} is not https")),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{flag} {text}: no query, fragment or user name allowed"
        ));
    }
    Ok(url)
}

impl OidcArgs {
    /// The checked settings, when `--oidc-issuer` is given; `console_url` (of the notify
    /// config) stands in for `--public-url`. Errors name the flag and the reason, never the
    /// secret.
    pub fn config(&self, console_url: Option<&str>) -> Result<Option<OidcConfig>, String> {
        let Some(issuer) = &self.oidc_issuer else {
            return Ok(None);
        };
        web_url("--oidc-issuer", issuer)?;
        let issuer =
            IssuerUrl::new(issuer.clone()).map_err(|e| format!("--oidc-issuer {issuer:?}: {e}"))?;
        let client_id = self
            .oidc_client_id
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or("--oidc-client-id: give the client id registered with the provider")?;
        let secret = self
            .oidc_client_secret
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or("--oidc-client-secret: give the client secret registered with the provider")?;
        let (flag, public) = match (&self.public_url, console_url) {
            (Some(u), _) => ("--public-url", u.as_str()),
            (None, Some(u)) => ("console_url (of --notify-config)", u),
            (None, None) => {
                return Err("--public-url: required with --oidc-issuer (where admins open the console, e.g. https://cc.example.com; the provider redirects to <URL>/auth/callback)".into());
            }
        };
        let base = web_url(flag, public)?;
        if base.path() != "/" {
            return Err(format!(
                "{flag} {public}: give the site's root (https://cc.example.com), without a path"
            ));
        }
        let redirect = RedirectUrl::new(format!("{}auth/callback", base.as_str()))
            .map_err(|e| format!("{flag} {public}: {e}"))?;
        if !self.oidc_scopes.iter().any(|s| s == "openid") {
            return Err("--oidc-scopes: must include openid".into());
        }
        if let Some(bad) = self
            .oidc_scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control()))
        {
            return Err(format!("--oidc-scopes: {bad:?} is not a scope"));
        }
        if self.oidc_groups_claim.trim().is_empty() {
            return Err("--oidc-groups-claim: give the claim's name (e.g. groups)".into());
        }
        if self.oidc_session_idle > self.oidc_session_lifetime {
            return Err(format!(
                "--oidc-session-idle ({}) is longer than --oidc-session-lifetime ({})",
                duration::format(self.oidc_session_idle),
                duration::format(self.oidc_session_lifetime)
            ));
        }
        if self.oidc_max_sessions == 0 {
            return Err("--oidc-max-sessions must be at least 1".into());
        }
        Ok(Some(OidcConfig {
            issuer,
            client_id: ClientId::new(client_id),
            client_secret: ClientSecret::new(secret),
            redirect,
            secure: base.scheme() == "https",
            scopes: self.oidc_scopes.clone(),
            groups_claim: self.oidc_groups_claim.clone(),
            trust_email: self.oidc_trust_email,
            limits: sessions::Limits {
                idle: self.oidc_session_idle,
                lifetime: self.oidc_session_lifetime,
                max: self.oidc_max_sessions,
            },
        }))
    }
}

/// Every claim of the ID token beyond the standard ones: the groups claim is read from here
/// (its name is configurable).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims(HashMap<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The client, as discovery makes it (an authorization and a token endpoint).
type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<IdFields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A sign-in between its two legs.
struct Pending {
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    next: String,
    started: Instant,
}

/// OpenID Connect sign-in and the sessions it starts.
pub struct Oidc {
    config: OidcConfig,
    http: http::Http,
    client: RwLock<Option<Arc<Client>>>,
    /// When discovery last ran (for [`REFRESH_MIN`]).
    discovered: Mutex<Option<Instant>>,
    pending: Mutex<HashMap<String, Pending>>,
    pub sessions: sessions::Sessions,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.issuer.as_str())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Oidc, String> {
        Ok(Oidc {
            http: http::Http::new()?,
            sessions: sessions::Sessions::new(config.limits),
            config,
            client: RwLock::new(None),
            discovered: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.config.secure {
            SESSION_COOKIE_SECURE
        } else {
            SESSION_COOKIE
        }
    }

    fn secure_attr(&self) -> &'static str {
        if self.config.secure { "; Secure" } else { "" }
    }

    /// `Set-Cookie` for session `id`.
    pub fn session_cookie(&self, id: &str) -> HeaderValue {
        let max_age = self.config.limits.lifetime.as_secs();
        HeaderValue::from_str(&format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            self.cookie_name(),
            self.secure_attr()
        ))
        .expect("a cookie of base64url characters")
    }

    /// `Set-Cookie` that clears the session cookie.
    pub fn clear_session_cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            self.cookie_name(),
            self.secure_attr()
        ))
        .expect("a plain cookie")
    }

    fn login_cookie_name(&self) -> &'static str {
        if self.config.secure {
            LOGIN_COOKIE_SECURE
        } else {
            LOGIN_COOKIE
        }
    }

    fn login_cookie(&self, state: &str, max_age: u64) -> HeaderValue {
        // `__Host-` needs `Path=/`; over plain HTTP the cookie stays on `/auth/`.
        let path = if self.config.secure { "/" } else { "/auth/" };
        HeaderValue::from_str(&format!(
            "{}={state}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
            self.login_cookie_name(),
            self.secure_attr()
        ))
        .expect("a cookie of base64url characters")
    }

    /// The session id a request's cookie holds, if any.
    pub fn session_id<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        cookie(headers, self.cookie_name())
    }

    fn client(&self) -> Option<Arc<Client>> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fetches the provider's discovery document and keys; whether it worked.
    async fn discover(&self) -> bool {
        *lock(&self.discovered) = Some(Instant::now());
        match CoreProviderMetadata::discover_async(self.config.issuer.clone(), &self.http).await {
            Ok(meta) => {
                let client = openidconnect::Client::from_provider_metadata(
                    meta,
                    self.config.client_id.clone(),
                    Some(self.config.client_secret.clone()),
                )
                .set_redirect_uri(self.config.redirect.clone());
                *self.client.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(client));
                tracing::info!(issuer = %self.config.issuer.as_str(), "OpenID Connect provider discovered.");
                true
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer.as_str(), error = %error_chain(&e), "Cannot reach the OpenID Connect provider; sign-in waits until it answers (retrying).");
                false
            }
        }
    }

    /// Discovers the provider now, then hourly; after a failure, again in 5 s, doubling up to
    /// 5 min. Sign-in answers 503 until the first discovery succeeds.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut retry = RETRY_MIN;
        loop {
            let next = if self.discover().await {
                retry = RETRY_MIN;
                REFRESH
            } else {
                let r = retry;
                retry = (retry * 2).min(RETRY_MAX);
                r
            };
            tokio::select! {
                () = tokio::time::sleep(next) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Keeps a started sign-in; drops expired ones and, when full, the oldest.
    fn remember(&self, state: String, pending: Pending) {
        let mut table = lock(&self.pending);
        if table.len() >= PENDING_MAX {
            table.retain(|_, p| p.started.elapsed() < PENDING_FOR);
        }
        if table.len() >= PENDING_MAX
            && let Some(oldest) = table
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
        {
            table.remove(&oldest);
        }
        table.insert(state, pending);
    }

    /// Takes a started sign-in (once), if it has not expired.
    fn take(&self, state: &str) -> Option<Pending> {
        lock(&self.pending)
            .remove(state)
            .filter(|p| p.started.elapsed() < PENDING_FOR)
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a request is a browser loading a page (a `GET` that accepts HTML): it gets sent to
/// sign in rather than a JSON `401`. Scripts' `fetch` (`*/*`), `EventSource`
/// (`text/event-stream`) and API clients (`application/json`) do not.
pub fn wants_page(method: &axum::http::Method, headers: &HeaderMap) -> bool {
    method == axum::http::Method::GET
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// `next` as a path of this site, or why not: it must start with one `/` (not `//` nor `/\`,
/// which browsers read as another host), hold no control characters nor backslashes, and be
/// at most [`NEXT_MAX`] bytes.
pub fn local_path(next: &str) -> Result<&str, String> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && next.len() <= NEXT_MAX;
    if ok {
        Ok(next)
    } else {
        Err("next: must be a path on this site (starting with a single /)".into())
    }
}

/// Where a browser is sent to sign in, to come back to the page it asked for.
pub fn login_location(path_and_query: &str) -> String {
    let next = local_path(path_and_query).unwrap_or("/");
    format!(
        "/auth/login?next={}",
        openidconnect::url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    )
}

fn oidc_of(auth: &AdminAuth) -> Result<&Arc<Oidc>, ApiError> {
    auth.oidc
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("sign-in is not configured here (--oidc-issuer)".into()))
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /auth/login?next=/path`: starts a sign-in at the provider.
pub async fn login(
    State(auth): State<Arc<AdminAuth>>,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let oidc = oidc_of(&auth)?;
    let next = local_path(q.next.as_deref().unwrap_or("/"))
        .map_err(ApiError::BadRequest)?
        .to_string();
    let client = oidc.client().ok_or_else(|| {
        ApiError::Unavailable(
            "the sign-in provider has not answered yet (see the log); try again shortly".into(),
        )
    })?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in oidc.config.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = request.url();
    oidc.remember(
        state.secret().clone(),
        Pending {
            nonce,
            verifier,
            next,
            started: Instant::now(),
        },
    );
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(url.as_str()).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    h.append(
        header::SET_COOKIE,
        oidc.login_cookie(state.secret(), PENDING_FOR.as_secs()),
    );
    Ok(res)
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn refused(reason: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(
        Refusal::SignIn,
        format!("sign-in refused: {}", reason.into()),
    )
}

/// Why an ID token is refused, in words (never the token).
fn claims_refusal(e: &ClaimsVerificationError) -> String {
    use ClaimsVerificationError as E;
    match e {
        E::Expired(_) => "the ID token has expired".into(),
        E::InvalidAudience(_) => "the ID token is for another client (aud)".into(),
        E::InvalidIssuer(_) => "the ID token is from another issuer (iss)".into(),
        E::InvalidNonce(_) => "the ID token's nonce is not this sign-in's".into(),
        E::SignatureVerification(s) => format!("the ID token's signature does not verify ({s})"),
        other => format!("the ID token is not valid ({other})"),
    }
}

/// `GET /auth/callback?code=&state=`: finishes a sign-in.
pub async fn callback(
    State(auth): State<Arc<AdminAuth>>,
    headers: HeaderMap,
    q: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let oidc = oidc_of(&auth)?;
    if let Some(error) = &q.error {
        let error: String = error.chars().filter(|c| !c.is_control()).take(80).collect();
        return Err(refused(format!("the provider said {error:?}")));
    }
    let state = q
        .state
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("state: missing".into()))?;
    // Taken first: a state is used once, whatever happens next.
    let pending = oidc
        .take(state)
        .ok_or_else(|| refused("unknown, expired or already used state; sign in again"))?;
    if cookie(&headers, oidc.login_cookie_name()) != Some(state) {
        return Err(refused(
            "this browser did not start this sign-in (no matching login cookie)",
        ));
    }
    let code = q
        .code
        .clone()
        .ok_or_else(|| ApiError::BadRequest("code: missing".into()))?;
    let client = oidc
        .client()
        .ok_or_else(|| ApiError::Unavailable("the sign-in provider has not answered yet".into()))?;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| ApiError::Internal(format!("token endpoint: {e}")))?
        .set_pkce_verifier(pending.verifier)
        .request_async(&oidc.http)
        .await
        .map_err(|e| {
            tracing::warn!(error = %error_chain(&e), "The provider refused to exchange a sign-in code.");
            refused("the provider refused the code")
        })?;
    let id_token = token
        .id_token()
        .ok_or_else(|| refused("the provider sent no ID token"))?;
    let verifier = client.id_token_verifier().set_allowed_algs([
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        CoreJwsSigningAlgorithm::EdDsa,
    ]);
    let claims = match id_token.claims(&verifier, &pending.nonce) {
        Ok(c) => c,
        Err(e) => {
            if matches!(e, ClaimsVerificationError::SignatureVerification(_)) {
                // Perhaps the provider rotated its keys: refetch them for the next sign-in.
                let recent = lock(&oidc.discovered).is_some_and(|t| t.elapsed() < REFRESH_MIN);
                if !recent {
                    oidc.discover().await;
                }
            }
            return Err(refused(claims_refusal(&e)));
        }
    };
    let email = claims
        .email()
        .map(|e| e.as_str().to_string())
        .filter(|e| crate::access::plain_name(e))
        .ok_or_else(|| refused("the ID token names no usable email (ask for the email scope)"))?;
    // The roles file matches addresses and domains: an address the provider has not verified
    // (a user may set their own at some providers) is refused unless the admin trusts it.
    if !email.contains('@') {
        return Err(refused(format!("{email:?} is not an email address")));
    }
    match claims.email_verified() {
        Some(true) => {}
        Some(false) => return Err(refused(format!("the provider has not verified {email}"))),
        None if oidc.config.trust_email => {}
        None => {
            return Err(refused(format!(
                "the provider does not say it verified {email} (no email_verified claim); if it only ever gives verified addresses, start with --oidc-trust-email"
            )));
        }
    }
    let groups = match claims.additional_claims().0.get(&oidc.config.groups_claim) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(g)) => vec![g.clone()],
        _ => Vec::new(),
    };
    let identity = auth.identity(
        Claimed {
            name: email,
            groups,
        },
        Via::Session,
    )?;
    tracing::info!(user = %identity.name, role = ?identity.role, "Signed in.");
    let id = oidc.sessions.insert(identity);
    let mut res = continue_page(&pending.next).into_response();
    let h = res.headers_mut();
    h.append(header::SET_COOKIE, oidc.session_cookie(&id));
    h.append(header::SET_COOKIE, oidc.login_cookie("", 0));
    Ok(res)
}

/// The page after sign-in: it moves on to `next` itself (a same-site navigation, which
/// carries the `SameSite=Strict` cookie).
fn continue_page(next: &str) -> maud::Markup {
    maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            (crate::ui::components::message_head("Signed in · VaultMesh", Some(next)))
            body {
                p { "Signed in. " a href=(next) { "Continue" } }
            }
        }
    }
}

fn signed_out_page() -> maud::Markup {
    maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            (crate::ui::components::message_head("Signed out · VaultMesh", None))
            body { p { "Signed out. " a href="/auth/login?next=%2Fconsole" { "Sign in again" } } }
        }
    }
}

/// `POST /auth/logout`: ends the session (server-side) and clears its cookie.
pub async fn logout(
    State(auth): State<Arc<AdminAuth>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let oidc = oidc_of(&auth)?;
    let ended = oidc
        .session_id(&headers)
        .is_some_and(|id| oidc.sessions.revoke(id));
    if ended {
        tracing::info!("Signed out.");
    }
    let page = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let mut res = if page {
        signed_out_page().into_response()
    } else {
        axum::Json(serde_json::json!({ "signed_out": ended })).into_response()
    };
    res.headers_mut()
        .append(header::SET_COOKIE, oidc.clear_session_cookie());
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_pages_ask_for_no_favicon() {
        // A browser asks for /favicon.ico on a page that names no icon; the 404 is an error in
        // its console (it failed the browser sign-in test when the refresh came late).
        for page in [continue_page("/console?range=1h"), signed_out_page()] {
            let page = page.into_string();
            assert!(
                page.contains(r#"<link rel="icon" href="data:,">"#),
                "{page}"
            );
            assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        }
        assert!(
            continue_page("/console?range=1h")
                .into_string()
                .contains(r#"<meta http-equiv="refresh" content="0; url=/console?range=1h">"#)
        );
    }

    #[test]
    fn next_must_be_a_local_path() {
        for ok in ["/", "/console", "/console?node=x&range=1h", "/a/b#c"] {
            assert_eq!(local_path(ok), Ok(ok));
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "evil.example",
            "",
            "/\nSet-Cookie: x",
            "javascript:alert(1)",
        ] {
            assert!(local_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            login_location("/console?node=a b"),
            "/auth/login?next=%2Fconsole%3Fnode%3Da+b"
        );
        assert_eq!(login_location("//evil"), "/auth/login?next=%2F");
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; vaultmesh_session_x=2; vaultmesh_session=abc"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }

    fn args() -> OidcArgs {
        OidcArgs {
            oidc_issuer: Some("https://id.example.com".into()),
            oidc_client_id: Some("cc".into()),
            oidc_client_secret: Some("s3cret-value".into()),
            public_url: Some("https://cc.example.com".into()),
            oidc_scopes: vec!["openid".into(), "email".into()],
            oidc_groups_claim: "groups".into(),
            oidc_session_idle: Duration::from_secs(3600),
            oidc_session_lifetime: Duration::from_secs(7200),
            oidc_max_sessions: 10,
            oidc_trust_email: false,
        }
    }

    #[test]
    fn settings_are_checked_naming_the_flag_and_never_the_secret() {
        let c = args().config(None).unwrap().unwrap();
        assert_eq!(c.redirect.as_str(), "https://cc.example.com/auth/callback");
        assert!(c.secure);
        assert!(!format!("{c:?}").contains("s3cret-value"));
        type Change = Box<dyn Fn(&mut OidcArgs)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|a| a.oidc_issuer = Some("http://id.example.com".into())),
                "--oidc-issuer http://id.example.com: must be https",
            ),
            (
                Box::new(|a| a.oidc_issuer = Some("not a url".into())),
                "--oidc-issuer \"not a url\": not a URL",
            ),
            (
                Box::new(|a| a.public_url = None),
                "--public-url: required with --oidc-issuer",
            ),
            (
                Box::new(|a| a.public_url = Some("https://cc.example.com/console".into())),
                "without a path",
            ),
            (
                Box::new(|a| a.public_url = Some("http://cc.example.com".into())),
                "--public-url http://cc.example.com: must be https",
            ),
            (
                Box::new(|a| a.oidc_scopes = vec!["email".into()]),
                "--oidc-scopes: must include openid",
            ),
            (
                Box::new(|a| a.oidc_client_secret = Some(String::new())),
                "--oidc-client-secret: give",
            ),
            (
                Box::new(|a| a.oidc_session_idle = Duration::from_secs(9000)),
                "--oidc-session-idle (2h 30m) is longer than --oidc-session-lifetime (2h)",
            ),
            (
                Box::new(|a| a.oidc_max_sessions = 0),
                "--oidc-max-sessions must be at least 1",
            ),
        ];
        for (change, want) in cases {
            let mut a = args();
            change(&mut a);
            let e = a.config(None).unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("s3cret-value"));
        }
        let mut a = args();
        a.public_url = None;
        let c = a.config(Some("http://127.0.0.1:8088/")).unwrap().unwrap();
        assert_eq!(c.redirect.as_str(), "http://127.0.0.1:8088/auth/callback");
        assert!(!c.secure);
    }
}
