//! Who an agent request is from, apart from how it arrives: enrollment tokens, the parts of a
//! signed request and their checks (the clock, the node's key, the signature, the replay
//! guard), and why a request's credentials were refused ([`Refusal`]). See `docs/PROTOCOL.md`.
//!
//! Behind the Cloudflare Tunnel every request comes from 127.0.0.1, so the address proves
//! nothing; only the node key does. Tokens are compared in constant time and never logged.
//!
//! Nothing here knows HTTP: a signed request's headers come in as values ([`SignedParts::parse`]),
//! and every refusal is an [`AuthError`] the server maps to `401` at its edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use vaultmesh_proto::auth::{
    self, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_SKEW_SECS, NodeKey,
};
use vaultmesh_proto::session::{
    HEADER_MAC, HEADER_SESSION, SESSION_MAX_SECS, SessionId, SessionKey, SharedSecret,
};
use vaultmesh_store::Store;

/// Why a request's credentials were refused: the `reason` of its log line. All are `401`,
/// counted as `unauthorized` in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A signature header is missing or malformed.
    Unsigned,
    /// The request's timestamp is too far from the Command Center's clock.
    StaleTimestamp,
    /// The signature (or session MAC) does not verify with the node's key.
    BadSignature,
    /// A session MAC names a Command Center key this server does not hold, or an expired
    /// session.
    Session,
    /// The exact request was already received.
    Replay,
    /// No key is enrolled for the node.
    UnknownNode,
    /// The node's key was revoked.
    Revoked,
    /// The enrollment token is unknown, expired or used up.
    BadToken,
    /// The admin bearer token is missing or wrong.
    AdminToken,
    /// A named API token is unknown, expired or revoked.
    ApiToken,
    /// The Cloudflare Access token is missing or does not verify.
    Access,
    /// No session, an ended one, or a refused OpenID Connect sign-in.
    SignIn,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::StaleTimestamp => "stale_timestamp",
            Refusal::BadSignature => "bad_signature",
            Refusal::Session => "session",
            Refusal::Replay => "replay",
            Refusal::UnknownNode => "unknown_node",
            Refusal::Revoked => "revoked",
            Refusal::BadToken => "bad_token",
            Refusal::AdminToken => "admin_token",
            Refusal::ApiToken => "api_token",
            Refusal::Access => "access",
            Refusal::SignIn => "sign_in",
        }
    }
}

/// A request refused for its credentials: why, and the message the client gets (never a
/// secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub refusal: Refusal,
    pub message: String,
}

impl AuthError {
    pub fn new(refusal: Refusal, message: impl Into<String>) -> AuthError {
        AuthError {
            refusal,
            message: message.into(),
        }
    }
}

/// Why a signed request could not be remembered by the replay guard ([`SignedParts::remember`]).
#[derive(Debug, thiserror::Error)]
pub enum RememberError {
    /// Refused: a replay, or (from [`SignedParts::verify`]) a stale clock or a bad signature.
    #[error(transparent)]
    Refused(#[from] AuthError),
    /// The guard holds as many requests as it may: retry later.
    #[error("too many signed requests within the replay window to remember another; retry later")]
    Full,
    /// The guard could not be written.
    #[error(transparent)]
    Store(#[from] vaultmesh_store::StoreError),
}

/// What an agent is told of a token that is unknown (or, minted at runtime, refused for any
/// reason: the same answer, so it learns nothing).
pub const TOKEN_NOT_VALID: &str = "enrollment token is not valid";

/// Shortest accepted enrollment token.
pub const TOKEN_MIN_LEN: usize = 16;

/// Why an enrollment token spec (`--enroll-token`) does not parse. Never shows the token, only
/// its [`token_id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenSpecError {
    #[error(
        "an enrollment token must be at least {TOKEN_MIN_LEN} printable characters without spaces"
    )]
    Short,
    #[error("enrollment token {id}: expires={value:?}: {reason}")]
    Expires {
        id: String,
        value: String,
        reason: String,
    },
    #[error("enrollment token {id}: unknown option {option:?} (use single-use or expires=RFC3339)")]
    UnknownOption { id: String, option: String },
}

/// One enrollment token.
#[derive(Clone)]
pub struct EnrollToken {
    secret: String,
    /// First 16 hex digits of the token's SHA-256: how logs and the registry refer to it.
    pub id: String,
    pub single_use: bool,
    pub expires: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for EnrollToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollToken")
            .field("id", &self.id)
            .field("single_use", &self.single_use)
            .field("expires", &self.expires)
            .finish()
    }
}

impl EnrollToken {
    /// Parses `TOKEN[,single-use][,expires=RFC3339]`.
    pub fn parse(spec: &str) -> Result<EnrollToken, TokenSpecError> {
        let mut parts = spec.split(',');
        let secret = parts.next().unwrap_or_default().trim().to_string();
        if secret.len() < TOKEN_MIN_LEN || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenSpecError::Short);
        }
        let mut token = EnrollToken {
            id: token_id(&secret),
            secret,
            single_use: false,
            expires: None,
        };
        for opt in parts {
            let opt = opt.trim();
            if opt == "single-use" {
                token.single_use = true;
            } else if let Some(t) = opt.strip_prefix("expires=") {
                let t = DateTime::parse_from_rfc3339(t).map_err(|e| TokenSpecError::Expires {
                    id: token.id.clone(),
                    value: t.to_string(),
                    reason: e.to_string(),
                })?;
                token.expires = Some(t.with_timezone(&Utc));
            } else {
                return Err(TokenSpecError::UnknownOption {
                    id: token.id,
                    option: opt.to_string(),
                });
            }
        }
        Ok(token)
    }
}

/// The id of a token (never the token itself).
pub fn token_id(secret: &str) -> String {
    hex::encode(&Sha256::digest(secret.as_bytes())[..8])
}

/// The configured enrollment tokens.
#[derive(Debug, Clone, Default)]
pub struct EnrollTokens(pub Vec<EnrollToken>);

impl EnrollTokens {
    /// The token `presented` matches, if any and still valid at `now`.
    pub fn matching(&self, presented: &str, now: DateTime<Utc>) -> Result<&EnrollToken, AuthError> {
        let found = self
            .0
            .iter()
            .find(|t| bool::from(t.secret.as_bytes().ct_eq(presented.as_bytes())));
        match found {
            None => Err(AuthError::new(Refusal::BadToken, TOKEN_NOT_VALID)),
            Some(t) if t.expires.is_some_and(|e| now >= e) => Err(AuthError::new(
                Refusal::BadToken,
                "enrollment token has expired",
            )),
            Some(t) => Ok(t),
        }
    }
}

/// How a request proves it is from its node: an Ed25519 signature, or a session MAC
/// (`docs/PROTOCOL.md`, "Signed requests" and "Session MACs").
#[derive(Debug)]
pub enum Credential {
    /// `X-VaultMesh-Signature`.
    Signature(String),
    /// `X-VaultMesh-Session` and `X-VaultMesh-Mac`.
    Mac { session: SessionId, mac: String },
}

impl Credential {
    /// `signature` or `mac`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Signature(_) => "signature",
            Credential::Mac { .. } => "mac",
        }
    }

    /// The credential's text, which the replay guard remembers.
    fn text(&self) -> &str {
        match self {
            Credential::Signature(s) => s,
            Credential::Mac { mac, .. } => mac,
        }
    }
}

/// The parts of a signed request needed to verify it.
#[derive(Debug)]
pub struct SignedParts {
    pub node_id: Uuid,
    pub timestamp: i64,
    pub credential: Credential,
    pub method: String,
    pub path_and_query: String,
}

impl SignedParts {
    /// Reads the credential headers through `header`, which gives a header's value by name
    /// ([`HEADER_NODE`], [`HEADER_TIMESTAMP`], and [`HEADER_SIGNATURE`] or [`HEADER_SESSION`]
    /// with [`HEADER_MAC`]; `None` when it is missing or not text), and keeps the request's
    /// method and path for the signed message.
    pub fn parse<'h>(
        header: impl Fn(&'static str) -> Option<&'h str>,
        method: &str,
        path_and_query: &str,
    ) -> Result<SignedParts, AuthError> {
        let unsigned = |message: String| AuthError::new(Refusal::Unsigned, message);
        let required = |name: &'static str| {
            header(name).ok_or_else(|| {
                unsigned(format!(
                    "missing {name} header: agent requests must be signed by the node key"
                ))
            })
        };
        let node_id = Uuid::parse_str(required(HEADER_NODE)?)
            .map_err(|_| unsigned(format!("{HEADER_NODE} is not a node id")))?;
        let timestamp: i64 = required(HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| unsigned(format!("{HEADER_TIMESTAMP} is not a Unix time in seconds")))?;
        let credential = match (header(HEADER_SIGNATURE), header(HEADER_MAC)) {
            (Some(_), Some(_)) => {
                return Err(unsigned(format!(
                    "both {HEADER_SIGNATURE} and {HEADER_MAC}: send one credential"
                )));
            }
            (None, Some(mac)) => {
                let session = header(HEADER_SESSION).ok_or_else(|| {
                    unsigned(format!(
                        "missing {HEADER_SESSION} header: {HEADER_MAC} needs it"
                    ))
                })?;
                let session = SessionId::parse(session)
                    .map_err(|e| unsigned(format!("{HEADER_SESSION}: {e}")))?;
                Credential::Mac {
                    session,
                    mac: mac.to_string(),
                }
            }
            _ => Credential::Signature(required(HEADER_SIGNATURE)?.to_string()),
        };
        Ok(SignedParts {
            node_id,
            timestamp,
            credential,
            method: method.to_string(),
            path_and_query: path_and_query.to_string(),
        })
    }

    /// Checks the request's timestamp against the Command Center's clock, and a session's
    /// age: needs no body, so it is done before one is read.
    pub fn check_clock(&self) -> Result<(), AuthError> {
        self.check_clock_at(Utc::now().timestamp())
    }

    /// [`SignedParts::check_clock`] with the clock reading `now` (Unix seconds).
    pub fn check_clock_at(&self, now: i64) -> Result<(), AuthError> {
        // Checked: a timestamp near i64::MIN must not wrap around into the window.
        let skew = now.abs_diff(self.timestamp);
        if skew > MAX_SKEW_SECS.unsigned_abs() {
            return Err(AuthError::new(
                Refusal::StaleTimestamp,
                format!(
                    "request timestamp is {skew} s away from the Command Center's clock (limit {MAX_SKEW_SECS} s); check the node's clock"
                ),
            ));
        }
        if let Credential::Mac { session, .. } = &self.credential {
            let age = now.saturating_sub(session.start);
            if !(-MAX_SKEW_SECS..=SESSION_MAX_SECS).contains(&age) {
                return Err(AuthError::new(
                    Refusal::Session,
                    format!(
                        "session {session} started {age} s ago; a session is accepted from {MAX_SKEW_SECS} s before its start to {SESSION_MAX_SECS} s after: start a new one, or sign the request ({HEADER_SIGNATURE})"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// For a session MAC, that `sessions` can take its session (this Command Center holds the
    /// key it names): needs no body, so a MAC the Command Center cannot check is refused before
    /// its body is read. Nothing to check for a signature.
    pub fn check_session(&self, sessions: &Sessions) -> Result<(), AuthError> {
        match &self.credential {
            Credential::Mac { session, .. } => sessions.takes(session),
            Credential::Signature(_) => Ok(()),
        }
    }

    /// The key the node is enrolled with in `store`: refused if it is not enrolled, or revoked.
    /// Needs no body either.
    pub fn enrolled_key(&self, store: &dyn Store) -> Result<VerifyingKey, AuthError> {
        let binding = store.binding(self.node_id).ok_or_else(|| {
            AuthError::new(
                Refusal::UnknownNode,
                format!("node {} is not enrolled", self.node_id),
            )
        })?;
        if let Some(rev) = &binding.revoked {
            return Err(AuthError::new(
                Refusal::Revoked,
                format!(
                    "node {} was revoked at {} by {}; its key is no longer accepted",
                    self.node_id,
                    rev.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    rev.by
                ),
            ));
        }
        Ok(binding.key)
    }

    /// For an enrollment: checks the clock and the *signature* against `key` (an enrollment
    /// proves it holds the key it enrolls with a signature, never a session MAC); then, in
    /// `store`, that the request was not accepted before (durably: across restarts and
    /// instances, see [`vaultmesh_store::seen`]).
    pub async fn verify(
        &self,
        key: &VerifyingKey,
        body: &[u8],
        store: &dyn Store,
    ) -> Result<(), RememberError> {
        if matches!(self.credential, Credential::Mac { .. }) {
            return Err(AuthError::new(
                Refusal::Unsigned,
                format!(
                    "an enrollment must be signed ({HEADER_SIGNATURE}) by the key it enrolls, not carry a session MAC"
                ),
            )
            .into());
        }
        self.check_credential(key, body, &Sessions::new(None))?;
        self.remember(store).await
    }

    /// Checks the clock and the credential against `key` — the signature, or the session MAC
    /// with the key `sessions` derives (nothing is remembered).
    pub fn check_credential(
        &self,
        key: &VerifyingKey,
        body: &[u8],
        sessions: &Sessions,
    ) -> Result<(), AuthError> {
        self.check_credential_at(key, body, sessions, Utc::now().timestamp())
    }

    /// [`SignedParts::check_credential`] with the clock reading `now` (Unix seconds).
    pub fn check_credential_at(
        &self,
        key: &VerifyingKey,
        body: &[u8],
        sessions: &Sessions,
        now: i64,
    ) -> Result<(), AuthError> {
        self.check_clock_at(now)?;
        let bad = |e: &dyn std::fmt::Display| {
            AuthError::new(Refusal::BadSignature, format!("node {}: {e}", self.node_id))
        };
        match &self.credential {
            Credential::Signature(signature) => {
                let msg = auth::request_message(
                    &self.method,
                    &self.path_and_query,
                    &self.node_id,
                    self.timestamp,
                    body,
                );
                auth::verify(key, signature, &msg).map_err(|e| bad(&e))
            }
            Credential::Mac { session, mac } => {
                let msg = vaultmesh_proto::session::mac_message(
                    &self.method,
                    &self.path_and_query,
                    &self.node_id,
                    self.timestamp,
                    session,
                    body,
                );
                sessions
                    .key(self.node_id, key, session)?
                    .verify(&msg, mac)
                    .map_err(|e| bad(&e))
            }
        }
    }

    /// Remembers the request in the replay guard: `Ok` the first time it is seen.
    pub async fn remember(&self, store: &dyn Store) -> Result<(), RememberError> {
        use vaultmesh_store::seen::{Seen, digest};
        match store
            .first_request(digest(&self.node_id, self.credential.text()))
            .await?
        {
            Seen::First => Ok(()),
            Seen::Again => Err(AuthError::new(
                Refusal::Replay,
                "this exact request was already received (replayed request)",
            )
            .into()),
            Seen::Full => Err(RememberError::Full),
        }
    }
}

/// A session this Command Center cannot take: `why`, and that a signature will do. The
/// message names the signature header, which is what tells an agent to sign instead
/// (`docs/PROTOCOL.md`, "Session MACs").
fn session_refused(why: String) -> AuthError {
    AuthError::new(
        Refusal::Session,
        format!("{why}; sign the request ({HEADER_SIGNATURE}) instead"),
    )
}

/// Most nodes whose shared secret [`Sessions`] keeps; past it the cache starts again (each
/// secret costs one X25519 to recompute).
const SECRETS_KEPT: usize = 100_000;

/// The session keys of the Command Center's key (`--signing-key`): the secret it shares with
/// each node, computed once per node key and kept, and each session's key derived from it,
/// once per session (a node's requests all use its current session).
pub struct Sessions {
    key: Option<(Arc<NodeKey>, String)>,
    secrets: RwLock<HashMap<Uuid, NodeSecret>>,
}

/// What [`Sessions`] keeps per node.
struct NodeSecret {
    /// The node key the secret is with.
    public: [u8; 32],
    secret: SharedSecret,
    /// The node's last session and its key.
    session: Option<(SessionId, SessionKey)>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("key_id", &self.key.as_ref().map(|k| &k.1))
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions with `cc_key`; without one, every session MAC is refused (agents then sign).
    pub fn new(cc_key: Option<Arc<NodeKey>>) -> Sessions {
        Sessions {
            key: cc_key.map(|k| {
                let id = vaultmesh_proto::command::key_id(&k.public_base64());
                (k, id)
            }),
            secrets: RwLock::default(),
        }
    }

    /// Whether this Command Center holds the key `session` is with.
    pub fn takes(&self, session: &SessionId) -> Result<(), AuthError> {
        self.cc_key(session).map(|_| ())
    }

    /// The Command Center key `session` is with, if this Command Center holds it.
    fn cc_key(&self, session: &SessionId) -> Result<&NodeKey, AuthError> {
        match &self.key {
            Some((cc, id)) if *id == session.key_id => Ok(cc),
            held => Err(session_refused(match held {
                Some((_, id)) => format!(
                    "session {session} is with command key {}, but this Command Center's key is {id}",
                    session.key_id
                ),
                None => "this Command Center has no command key (--signing-key), so it takes no session MACs".into(),
            })),
        }
    }

    /// The key of `session` for `node_id`, enrolled with `node_key`.
    pub fn key(
        &self,
        node_id: Uuid,
        node_key: &VerifyingKey,
        session: &SessionId,
    ) -> Result<SessionKey, AuthError> {
        let cc = self.cc_key(session)?;
        let public = node_key.to_bytes();
        let cached = {
            let secrets = self.secrets.read().unwrap_or_else(|p| p.into_inner());
            match secrets.get(&node_id).filter(|n| n.public == public) {
                Some(NodeSecret {
                    session: Some((id, key)),
                    ..
                }) if id == session => return Ok(key.clone()),
                Some(n) => Some(n.secret.clone()),
                None => None,
            }
        };
        let secret = match cached {
            Some(s) => s,
            None => SharedSecret::between(cc, node_key)
                .map_err(|e| session_refused(format!("node {node_id}: {e}")))?,
        };
        let key = secret.session_key(&node_id, session);
        let mut secrets = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        if secrets.len() >= SECRETS_KEPT && !secrets.contains_key(&node_id) {
            secrets.clear();
        }
        secrets.insert(
            node_id,
            NodeSecret {
                public,
                secret,
                session: Some((session.clone(), key.clone())),
            },
        );
        Ok(key)
    }
}

/// At most one report per node and reason per window: what keeps an agent that retries a
/// refused request every few seconds from filling the journal and the event log.
#[derive(Debug)]
pub struct Throttle {
    window: std::time::Duration,
    seen: Mutex<std::collections::HashMap<(Uuid, &'static str), std::time::Instant>>,
}

impl Throttle {
    pub fn new(window: std::time::Duration) -> Throttle {
        Throttle {
            window,
            seen: Mutex::default(),
        }
    }

    /// True the first time `(node, reason)` is seen in the window.
    pub fn first_in_window(&self, node: Uuid, reason: &'static str) -> bool {
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, t| now.duration_since(*t) < self.window);
        }
        match seen.get(&(node, reason)) {
            Some(t) if now.duration_since(*t) < self.window => false,
            _ => {
                seen.insert((node, reason), now);
                true
            }
        }
    }
}

/// How often a node's refused enrollments are logged (each is answered 403 regardless).
pub const REFUSAL_EVENT_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_specs() {
        let t =
            EnrollToken::parse("0123456789abcdef,single-use,expires=2030-01-01T00:00:00Z").unwrap();
        assert!(t.single_use && t.expires.is_some());
        assert!(
            !format!("{t:?}").contains("0123456789abcdef"),
            "Debug never shows the token"
        );
        assert!(
            EnrollToken::parse("short")
                .unwrap_err()
                .to_string()
                .contains("at least 16")
        );
        let unknown = EnrollToken::parse("0123456789abcdef,forever").unwrap_err();
        assert!(unknown.to_string().contains("unknown option"));
        assert!(
            !unknown.to_string().contains("0123456789abcdef"),
            "errors name the token's id, never the token"
        );
        let tokens = EnrollTokens(vec![
            t,
            EnrollToken::parse("fedcba9876543210,expires=2020-01-01T00:00:00Z").unwrap(),
        ]);
        let now = Utc::now();
        assert!(tokens.matching("0123456789abcdef", now).is_ok());
        let refused = tokens.matching("0123456789abcdeX", now).unwrap_err();
        assert_eq!(refused.refusal, Refusal::BadToken);
        assert!(refused.to_string().contains("not valid"));
        assert!(
            tokens
                .matching("fedcba9876543210", now)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
    }

    /// Header values by name, as a server hands them over.
    fn lookup<'a>(
        node: Option<&'a str>,
        timestamp: Option<&'a str>,
        signature: Option<&'a str>,
    ) -> impl Fn(&'static str) -> Option<&'a str> {
        move |name| match name {
            HEADER_NODE => node,
            HEADER_TIMESTAMP => timestamp,
            HEADER_SIGNATURE => signature,
            _ => None,
        }
    }

    #[test]
    fn signed_parts_parse_from_header_values() {
        let node = Uuid::from_u128(7).to_string();
        let node = node.as_str();
        let parts = SignedParts::parse(
            lookup(Some(node), Some("1700000000"), Some("c2ln")),
            "POST",
            "/x?y",
        )
        .unwrap();
        assert_eq!(parts.node_id, Uuid::from_u128(7));
        assert_eq!(parts.timestamp, 1_700_000_000);
        assert_eq!(
            (parts.method.as_str(), parts.path_and_query.as_str()),
            ("POST", "/x?y")
        );
        for (node, timestamp, says) in [
            (None, Some("1"), "missing x-vaultmesh-node header"),
            (Some("nope"), Some("1"), "is not a node id"),
            (Some(node), None, "missing x-vaultmesh-timestamp header"),
            (Some(node), Some("soon"), "is not a Unix time"),
        ] {
            let e =
                SignedParts::parse(lookup(node, timestamp, Some("c2ln")), "POST", "/").unwrap_err();
            assert_eq!(e.refusal, Refusal::Unsigned);
            assert!(e.message.contains(says), "{e}");
        }
        let unsigned = SignedParts::parse(lookup(Some(node), Some("1"), None), "POST", "/");
        assert!(
            unsigned
                .unwrap_err()
                .message
                .contains("missing x-vaultmesh-signature header")
        );
        let stale = SignedParts::parse(
            lookup(Some(node), Some(&i64::MIN.to_string()), Some("c2ln")),
            "GET",
            "/",
        )
        .unwrap()
        .check_clock()
        .unwrap_err();
        assert_eq!(stale.refusal, Refusal::StaleTimestamp, "no wrap-around");
    }

    #[test]
    fn a_session_key_follows_the_nodes_enrolled_key_and_the_cc_key() {
        use vaultmesh_proto::session::SharedSecret;
        let public = |k: &NodeKey| auth::parse_public_key(&k.public_base64()).unwrap();
        let cc = std::sync::Arc::new(NodeKey::from_seed([3; 32]));
        let sessions = Sessions::new(Some(cc.clone()));
        let session = SessionId::new(&cc.public_base64(), 1_764_410_400, [0; 16]);
        let node = Uuid::from_u128(1);
        let (a, b) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
        let mac_a = SharedSecret::between(&a, &public(&cc))
            .unwrap()
            .session_key(&node, &session)
            .mac(b"m");
        let verify = |key: &NodeKey| {
            sessions
                .key(node, &public(key), &session)
                .unwrap()
                .verify(b"m", &mac_a)
        };
        assert!(verify(&a).is_ok());
        // The node re-enrolled (rekeyed) with `b`: the secret kept for `a` is not used.
        assert!(verify(&b).is_err());
        assert!(verify(&a).is_ok());
        // Each session has its own key: the one kept for the last session is not reused.
        let next = SessionId::new(&cc.public_base64(), 1_764_410_500, [1; 16]);
        let mac_next = SharedSecret::between(&a, &public(&cc))
            .unwrap()
            .session_key(&node, &next)
            .mac(b"m");
        let key_next = sessions.key(node, &public(&a), &next).unwrap();
        assert!(key_next.verify(b"m", &mac_next).is_ok());
        assert!(key_next.verify(b"m", &mac_a).is_err());
        assert!(verify(&a).is_ok(), "back to the first session");
        // A session with another Command Center key, or a Command Center without a key: refused
        // before any body is read, naming the signature header the agent then uses.
        let elsewhere = SessionId::new(&b.public_base64(), 1_764_410_400, [0; 16]);
        let refused = sessions.takes(&elsewhere).unwrap_err();
        assert_eq!(refused.refusal, Refusal::Session);
        assert!(refused.message.contains(HEADER_SIGNATURE), "{refused}");
        let keyless = Sessions::new(None).takes(&session).unwrap_err();
        assert!(keyless.message.contains("no command key"), "{keyless}");
    }

    /// A real store (files in a temp dir) with node 1 enrolled under `key`.
    async fn enrolled(key: &vaultmesh_proto::auth::NodeKey) -> (tempfile::TempDir, Box<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let bus = std::sync::Arc::new(vaultmesh_store::bus::Bus::new(16, 16));
        let (store, _) = vaultmesh_store::JsonlStore::open(
            &vaultmesh_store::StoreOptions::new(dir.path().to_path_buf()),
            bus,
        )
        .unwrap();
        let req = vaultmesh_proto::auth::EnrollRequest {
            node_id: Uuid::from_u128(1),
            public_key: key.public_base64(),
            hostname: "n1".into(),
            os_profile: "Generic".into(),
            token: "0123456789abcdef".into(),
            nonce: None,
        };
        store
            .enroll(
                &req,
                vaultmesh_store::tokens::TokenUse::Configured {
                    id: "t".into(),
                    single_use: false,
                },
            )
            .await
            .unwrap();
        (dir, Box::new(store))
    }

    fn signed(
        key: &vaultmesh_proto::auth::NodeKey,
        node: u128,
        at: i64,
        body: &[u8],
    ) -> SignedParts {
        let h = key.sign_request(
            "POST",
            "/api/agent/heartbeat",
            &Uuid::from_u128(node),
            at,
            body,
        );
        let header = lookup(Some(&h.node), Some(&h.timestamp), Some(&h.signature));
        SignedParts::parse(header, "POST", "/api/agent/heartbeat").unwrap()
    }

    #[tokio::test]
    async fn a_signed_request_is_verified_against_the_enrolled_key_once() {
        let key = vaultmesh_proto::auth::NodeKey::from_seed([1; 32]);
        let (_dir, store) = enrolled(&key).await;
        let now = Utc::now().timestamp();
        let parts = signed(&key, 1, now, b"{}");
        let enrolled_key = parts.enrolled_key(store.as_ref()).unwrap();
        parts
            .verify(&enrolled_key, b"{}", store.as_ref())
            .await
            .unwrap();
        let again = parts.verify(&enrolled_key, b"{}", store.as_ref()).await;
        assert!(
            matches!(&again, Err(RememberError::Refused(e)) if e.refusal == Refusal::Replay),
            "{again:?}"
        );
        let none = Sessions::new(None);
        let other_body = signed(&key, 1, now, b"{}").check_credential(&enrolled_key, b"[]", &none);
        assert_eq!(other_body.unwrap_err().refusal, Refusal::BadSignature);
        let stale = signed(&key, 1, now - 2 * MAX_SKEW_SECS, b"{}");
        assert_eq!(
            stale
                .check_credential(&enrolled_key, b"{}", &none)
                .unwrap_err()
                .refusal,
            Refusal::StaleTimestamp
        );
        let stranger = signed(&key, 2, now, b"{}").enrolled_key(store.as_ref());
        assert_eq!(stranger.unwrap_err().refusal, Refusal::UnknownNode);
        store
            .revoke(Uuid::from_u128(1), "admin".into(), None)
            .await
            .unwrap();
        let revoked = signed(&key, 1, now, b"{}").enrolled_key(store.as_ref());
        let revoked = revoked.unwrap_err();
        assert_eq!(revoked.refusal, Refusal::Revoked);
        assert!(revoked.message.contains("by admin"), "{revoked}");
    }
}
