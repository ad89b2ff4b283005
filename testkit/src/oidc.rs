//! A local OpenID Connect provider for sign-in tests: discovery, keys (JWKS), `/authorize` (signs
//! the configured user in at once and redirects back with a code) and `/token` (checks the code,
//! the client secret and the PKCE verifier, and returns an RS256 ID token). Knobs make it send a
//! token for another audience, an expired one, or one with the wrong nonce.
//!
//! The ID token is signed with `fixtures/access/k1.pem`, a **test-only** RSA key (the same one the
//! Cloudflare Access tests use). Also here: [`Provider::sign_in`], the browser's three hops done
//! with a plain HTTP client, for tests that need a session cookie without Chromium.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::page::Served;

/// The client id tests register.
pub const CLIENT_ID: &str = "vaultmesh-test-client";
/// The client secret tests register (a test value).
pub const CLIENT_SECRET: &str = "test-oidc-client-secret-5f1c9a";

/// What the provider does, settable while it runs.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// The user `/authorize` signs in.
    pub email: String,
    pub groups: Vec<String>,
    /// Issue the ID token for another client.
    pub wrong_aud: bool,
    /// Issue an ID token that expired ten minutes ago.
    pub expired: bool,
    /// Put another nonce in the ID token than the sign-in asked for.
    pub wrong_nonce: bool,
    /// The ID token's `email_verified` (`None`: the claim is left out, as Entra ID does).
    pub email_verified: Option<bool>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            email: "alice@example.com".into(),
            groups: vec!["sre".into()],
            wrong_aud: false,
            expired: false,
            wrong_nonce: false,
            email_verified: Some(true),
        }
    }
}

#[derive(Debug)]
struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    knobs: Knobs,
}

#[derive(Debug, Default)]
struct Shared {
    issuer: String,
    knobs: Knobs,
    codes: HashMap<String, Grant>,
    /// Why `/token` refused, in order.
    refusals: Vec<String>,
    /// ID tokens issued.
    issued: usize,
}

type S = Arc<Mutex<Shared>>;

fn lock(s: &S) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The provider on `127.0.0.1:PORT`, until dropped.
#[derive(Debug)]
pub struct Provider {
    /// The issuer: `http://127.0.0.1:PORT`.
    pub url: String,
    shared: S,
    _served: Served,
    /// The roles file [`Provider::flags`] names: the default user is an admin, anyone else a
    /// viewer (sign-in needs a roles file).
    roles: tempfile::TempDir,
}

impl Provider {
    pub fn start() -> Provider {
        let shared: S = Arc::default();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(Arc::clone(&shared));
        let served = Served::start(app, "127.0.0.1");
        let url = format!("http://{}", served.addr);
        lock(&shared).issuer = url.clone();
        let roles = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            roles.path().join("roles.toml"),
            "default = \"viewer\"\n[admin]\nemails = [\"alice@example.com\"]\n",
        )
        .expect("roles file");
        Provider {
            url,
            shared,
            _served: served,
            roles,
        }
    }

    /// Changes what the provider does from now on.
    pub fn set(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut lock(&self.shared).knobs);
    }

    /// Why `/token` refused requests so far.
    pub fn refusals(&self) -> Vec<String> {
        lock(&self.shared).refusals.clone()
    }

    /// ID tokens issued so far.
    pub fn issued(&self) -> usize {
        lock(&self.shared).issued
    }

    /// The `serve` flags of a Command Center signing in here, listening on `port` (its public
    /// URL is `http://127.0.0.1:PORT`).
    pub fn flags(&self, port: u16) -> Vec<String> {
        vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--public-url".into(),
            format!("http://127.0.0.1:{port}"),
            "--oidc-issuer".into(),
            self.url.clone(),
            "--oidc-client-id".into(),
            CLIENT_ID.into(),
            "--oidc-client-secret".into(),
            CLIENT_SECRET.into(),
            "--roles".into(),
            self.roles.path().join("roles.toml").display().to_string(),
        ]
    }

    /// A Command Center signing in here, with `extra` flags; returned once the provider has
    /// been discovered (`/auth/login` no longer answers 503).
    pub fn command_center(&self, extra: &[&str]) -> crate::CommandCenter {
        let port = crate::free_port();
        let mut args = self.flags(port);
        if extra.contains(&"--roles") {
            // The caller's roles file instead of the default one.
            args.truncate(args.len() - 2);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cc = crate::CommandCenter::start_with(&args);
        wait_discovered(&cc.url);
        cc
    }

    /// Signs in to the Command Center at `cc_url` as the browser would (login, the provider,
    /// the callback), asking to come back to `next`.
    pub fn sign_in(&self, cc_url: &str, next: &str) -> SignIn {
        let http = crate::http();
        let mut url = reqwest::Url::parse(&format!("{cc_url}/auth/login")).expect("a URL");
        url.query_pairs_mut().append_pair("next", next);
        let login = http.get(url).send().expect("GET /auth/login");
        assert_eq!(login.status(), 303, "GET /auth/login: {:?}", login.text());
        let login_cookie = set_cookie(login.headers(), "vaultmesh_login").expect("login cookie");
        let authorize = location(login.headers());
        let at_provider = http.get(&authorize).send().expect("GET /authorize");
        assert_eq!(at_provider.status(), 303, "{:?}", at_provider.text());
        let callback = location(at_provider.headers());
        SignIn::finish(&callback, &login_cookie)
    }
}

/// The three hops of a sign-in, as a test sees them.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The callback URL the provider sent the browser to.
    pub callback: String,
    /// The login cookie's value (the state binding).
    pub login_cookie: String,
    /// The callback's reply.
    pub status: u16,
    pub body: String,
    /// The session cookie's value, when one was set.
    pub session: Option<String>,
    /// Every `Set-Cookie` of the callback's reply.
    pub set_cookies: Vec<String>,
}

impl SignIn {
    /// Calls `callback` with the login cookie (again, for a replay).
    pub fn finish(callback: &str, login_cookie: &str) -> SignIn {
        let reply = crate::http()
            .get(callback)
            .header("cookie", format!("vaultmesh_login={login_cookie}"))
            .send()
            .expect("GET /auth/callback");
        let set_cookies = reply
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let session = set_cookie(reply.headers(), "vaultmesh_session").filter(|v| !v.is_empty());
        let status = reply.status().as_u16();
        SignIn {
            callback: callback.to_string(),
            login_cookie: login_cookie.to_string(),
            status,
            body: reply.text().unwrap_or_default(),
            session,
            set_cookies,
        }
    }

    /// The session cookie, or a panic with the reply.
    pub fn cookie(&self) -> String {
        self.session.clone().unwrap_or_else(|| {
            panic!("no session: {} {}", self.status, self.body);
        })
    }
}

/// Waits until the Command Center at `cc_url` has discovered its provider.
pub fn wait_discovered(cc_url: &str) {
    crate::wait_for(std::time::Duration::from_secs(20), || {
        let r = crate::http()
            .get(format!("{cc_url}/auth/login"))
            .send()
            .ok()?;
        (r.status() != 503).then_some(())
    })
    .expect("the Command Center never discovered the provider");
}

/// The value a `Set-Cookie` of `headers` gives cookie `name`.
pub fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn location(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location")
        .to_string()
}

async fn discovery(State(s): State<S>) -> axum::Json<Value> {
    let issuer = lock(&s).issuer.clone();
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "scopes_supported": ["openid", "email", "profile"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks() -> axum::Json<Value> {
    let key: Value =
        serde_json::from_str(include_str!("../fixtures/access/k1.jwk.json")).expect("fixture JWK");
    axum::Json(json!({ "keys": [key] }))
}

fn bad(status: StatusCode, why: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": "invalid_request", "error_description": why})),
    )
        .into_response()
}

async fn authorize(State(s): State<S>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != CLIENT_ID || get("response_type") != "code" {
        return bad(StatusCode::BAD_REQUEST, "unknown client or response type");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return bad(StatusCode::BAD_REQUEST, "PKCE (S256) is required");
    }
    let scopes = get("scope");
    if !scopes.split(' ').any(|s| s == "openid") {
        return bad(StatusCode::BAD_REQUEST, "scope openid is required");
    }
    let code = uuid::Uuid::new_v4().simple().to_string();
    let redirect_uri = get("redirect_uri");
    {
        let mut sh = lock(&s);
        let knobs = sh.knobs.clone();
        sh.codes.insert(
            code.clone(),
            Grant {
                nonce: get("nonce"),
                challenge: get("code_challenge"),
                redirect_uri: redirect_uri.clone(),
                knobs,
            },
        );
    }
    let mut url = reqwest::Url::parse(&redirect_uri).expect("a redirect URI");
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response()
}

async fn token(
    State(s): State<S>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let refuse = |why: &str| {
        lock(&s).refusals.push(why.to_string());
        bad(StatusCode::BAD_REQUEST, why)
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if basic.as_deref() != Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}")) {
        return refuse("wrong client credentials");
    }
    if get("grant_type") != "authorization_code" {
        return refuse("grant_type");
    }
    let Some(grant) = lock(&s).codes.remove(&get("code")) else {
        return refuse("unknown or used code");
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(get("code_verifier").as_bytes()));
    if challenge != grant.challenge {
        return refuse("the PKCE verifier does not match");
    }
    if get("redirect_uri") != grant.redirect_uri {
        return refuse("redirect_uri differs");
    }
    let issuer = lock(&s).issuer.clone();
    let now = chrono::Utc::now().timestamp();
    let k = &grant.knobs;
    let mut claims = json!({
        "iss": issuer,
        "sub": format!("sub-{}", k.email),
        "aud": [if k.wrong_aud { "another-client" } else { CLIENT_ID }],
        "exp": if k.expired { now - 600 } else { now + 300 },
        "iat": if k.expired { now - 900 } else { now },
        "nonce": if k.wrong_nonce { "not-the-nonce".to_string() } else { grant.nonce.clone() },
        "email": k.email,
        "groups": k.groups,
    });
    if let Some(v) = k.email_verified {
        claims["email_verified"] = json!(v);
    }
    let id_token = crate::access::mint("k1", &claims);
    lock(&s).issued += 1;
    axum::Json(json!({
        "access_token": uuid::Uuid::new_v4().simple().to_string(),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}
