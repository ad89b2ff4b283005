//! Who an agent request is from: enrollment tokens, and the `Signed` extractor that verifies
//! the node signature on every other `/api/agent/*` request (see `docs/PROTOCOL.md`).
//!
//! Behind the Cloudflare Tunnel every request comes from 127.0.0.1, so the address proves
//! nothing; only the node key does. Tokens are compared in constant time and never logged.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use vaultmesh_proto::auth::{self, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_SKEW_SECS};

use crate::error::{ApiError, Refusal};
use crate::server::AppState;

/// Shortest accepted enrollment token.
pub const TOKEN_MIN_LEN: usize = 16;

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
    pub fn parse(spec: &str) -> Result<EnrollToken, String> {
        let mut parts = spec.split(',');
        let secret = parts.next().unwrap_or_default().trim().to_string();
        if secret.len() < TOKEN_MIN_LEN || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "an enrollment token must be at least {TOKEN_MIN_LEN} printable characters without spaces"
            ));
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
                let t = DateTime::parse_from_rfc3339(t)
                    .map_err(|e| format!("enrollment token {}: expires={t:?}: {e}", token.id))?;
                token.expires = Some(t.with_timezone(&Utc));
            } else {
                return Err(format!(
                    "enrollment token {}: unknown option {opt:?} (use single-use or expires=RFC3339)",
                    token.id
                ));
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
    pub fn matching(&self, presented: &str, now: DateTime<Utc>) -> Result<&EnrollToken, ApiError> {
        let found = self
            .0
            .iter()
            .find(|t| bool::from(t.secret.as_bytes().ct_eq(presented.as_bytes())));
        match found {
            None => Err(ApiError::Unauthorized(
                Refusal::BadToken,
                "enrollment token is not valid".into(),
            )),
            Some(t) if t.expires.is_some_and(|e| now >= e) => Err(ApiError::Unauthorized(
                Refusal::BadToken,
                "enrollment token has expired".into(),
            )),
            Some(t) => Ok(t),
        }
    }
}

/// Signatures seen recently, so a captured request cannot be replayed within the skew window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    inner: Mutex<Seen>,
}

/// Digests of recent signatures, and the order they expire in.
#[derive(Debug, Default)]
struct Seen(HashSet<[u8; 32]>, VecDeque<(i64, [u8; 32])>);

impl ReplayGuard {
    /// Records a signature; false if it was already seen.
    pub fn first_time(&self, node: &Uuid, signature: &str, now: i64) -> bool {
        let mut digest = Sha256::new();
        digest.update(node.as_bytes());
        digest.update(signature.as_bytes());
        let key: [u8; 32] = digest.finalize().into();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Seen(seen, order) = &mut *g;
        while let Some((t, k)) = order.front() {
            if now - t > 2 * MAX_SKEW_SECS {
                seen.remove(k);
                order.pop_front();
            } else {
                break;
            }
        }
        if !seen.insert(key) {
            return false;
        }
        order.push_back((now, key));
        true
    }
}

/// The parts of a signed request needed to verify it.
#[derive(Debug)]
pub struct SignedParts {
    pub node_id: Uuid,
    pub timestamp: i64,
    pub signature: String,
    pub method: String,
    pub path_and_query: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                Refusal::Unsigned,
                format!("missing {name} header: agent requests must be signed by the node key"),
            )
        })
}

impl SignedParts {
    pub fn from_request(
        headers: &HeaderMap,
        method: &str,
        path_and_query: &str,
    ) -> Result<SignedParts, ApiError> {
        let node = header(headers, HEADER_NODE)?;
        let node_id = Uuid::parse_str(node).map_err(|_| {
            ApiError::Unauthorized(Refusal::Unsigned, format!("{HEADER_NODE} is not a node id"))
        })?;
        let timestamp: i64 = header(headers, HEADER_TIMESTAMP)?.parse().map_err(|_| {
            ApiError::Unauthorized(
                Refusal::Unsigned,
                format!("{HEADER_TIMESTAMP} is not a Unix time in seconds"),
            )
        })?;
        let signature = header(headers, HEADER_SIGNATURE)?.to_string();
        Ok(SignedParts {
            node_id,
            timestamp,
            signature,
            method: method.to_string(),
            path_and_query: path_and_query.to_string(),
        })
    }

    /// Checks the clock, the signature against `key`, and that it is not a replay.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        body: &[u8],
        guard: &ReplayGuard,
    ) -> Result<(), ApiError> {
        let now = Utc::now().timestamp();
        let skew = (now - self.timestamp).abs();
        if skew > MAX_SKEW_SECS {
            return Err(ApiError::Unauthorized(
                Refusal::StaleTimestamp,
                format!(
                    "request timestamp is {skew} s away from the Command Center's clock (limit {MAX_SKEW_SECS} s); check the node's clock"
                ),
            ));
        }
        let msg = auth::request_message(
            &self.method,
            &self.path_and_query,
            &self.node_id,
            self.timestamp,
            body,
        );
        auth::verify(key, &self.signature, &msg).map_err(|e| {
            ApiError::Unauthorized(Refusal::BadSignature, format!("node {}: {e}", self.node_id))
        })?;
        if !guard.first_time(&self.node_id, &self.signature, now) {
            return Err(ApiError::Unauthorized(
                Refusal::Replay,
                "this exact request was already received (replayed request)".into(),
            ));
        }
        Ok(())
    }
}

/// A request verified as coming from an enrolled, unrevoked node: its id and raw body.
#[derive(Debug)]
pub struct Signed {
    pub node_id: Uuid,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl FromRequest<AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let method = req.method().as_str().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let headers = req.headers().clone();
        let parts = SignedParts::from_request(&headers, &method, &path)?;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(ApiError::from)?;
        let binding = state.store.binding(parts.node_id).ok_or_else(|| {
            ApiError::Unauthorized(
                Refusal::UnknownNode,
                format!("node {} is not enrolled", parts.node_id),
            )
        })?;
        if let Some(rev) = &binding.revoked {
            return Err(ApiError::Unauthorized(
                Refusal::Revoked,
                format!(
                    "node {} was revoked at {} by {}; its key is no longer accepted",
                    parts.node_id,
                    rev.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    rev.by
                ),
            ));
        }
        parts.verify(&binding.key, &body, &state.replay_guard)?;
        // Counted after the signature: nobody can spend another node's allowance.
        state.rate_limit.check(parts.node_id)?;
        Ok(Signed {
            node_id: parts.node_id,
            headers,
            body,
        })
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

/// Per-node rate limit of agent requests: a token bucket per node (`rate` requests a second,
/// up to `burst` at once). Beyond it, `429` with `Retry-After`; the agent backs off.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, (f64, std::time::Instant)>>,
}

impl RateLimit {
    pub fn new(rate: f64, burst: u32) -> RateLimit {
        RateLimit {
            rate: rate.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes one token from `node`'s bucket.
    pub fn check(&self, node: uuid::Uuid) -> Result<(), ApiError> {
        let now = std::time::Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: buckets full again for an hour are forgotten.
        if b.len() > 100_000 {
            b.retain(|_, (_, t)| now.duration_since(*t).as_secs() < 3600);
        }
        let (tokens, last) = b.entry(node).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64;
            Err(ApiError::TooManyRequests {
                node,
                retry_after_s: wait,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_refills() {
        let rl = RateLimit::new(1000.0, 3);
        let n = uuid::Uuid::from_u128(1);
        for _ in 0..3 {
            rl.check(n).unwrap();
        }
        assert!(matches!(rl.check(n), Err(ApiError::TooManyRequests { .. })));
        assert!(
            rl.check(uuid::Uuid::from_u128(2)).is_ok(),
            "buckets are per node"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(rl.check(n).is_ok(), "refilled");
    }

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
                .contains("at least 16")
        );
        assert!(
            EnrollToken::parse("0123456789abcdef,forever")
                .unwrap_err()
                .contains("unknown option")
        );
        let tokens = EnrollTokens(vec![
            t,
            EnrollToken::parse("fedcba9876543210,expires=2020-01-01T00:00:00Z").unwrap(),
        ]);
        let now = Utc::now();
        assert!(tokens.matching("0123456789abcdef", now).is_ok());
        assert!(
            tokens
                .matching("0123456789abcdeX", now)
                .unwrap_err()
                .to_string()
                .contains("not valid")
        );
        assert!(
            tokens
                .matching("fedcba9876543210", now)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
    }

    #[test]
    fn replay_guard_forgets_after_the_window() {
        let g = ReplayGuard::default();
        let n = Uuid::from_u128(1);
        assert!(g.first_time(&n, "sig", 1000));
        assert!(!g.first_time(&n, "sig", 1001));
        assert!(g.first_time(&Uuid::from_u128(2), "sig", 1001));
        assert!(g.first_time(&n, "other", 1002 + 2 * MAX_SKEW_SECS));
        assert!(
            g.first_time(&n, "sig", 1002 + 2 * MAX_SKEW_SECS),
            "expired entries are dropped"
        );
    }
}
