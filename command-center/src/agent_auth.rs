//! Who an agent request is from: enrollment tokens, and the `Signed` extractor that verifies
//! the node signature on every other `/api/agent/*` request (see `docs/PROTOCOL.md`).
//!
//! Behind the Cloudflare Tunnel every request comes from 127.0.0.1, so the address proves
//! nothing; only the node key does. Tokens are compared in constant time and never logged.

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

    /// Checks the request's timestamp against the Command Center's clock: needs no body, so
    /// it is done before one is read.
    pub fn check_clock(&self) -> Result<(), ApiError> {
        let now = Utc::now().timestamp();
        // Checked: a timestamp near i64::MIN must not wrap around into the window.
        let skew = now.abs_diff(self.timestamp);
        if skew > MAX_SKEW_SECS.unsigned_abs() {
            return Err(ApiError::Unauthorized(
                Refusal::StaleTimestamp,
                format!(
                    "request timestamp is {skew} s away from the Command Center's clock (limit {MAX_SKEW_SECS} s); check the node's clock"
                ),
            ));
        }
        Ok(())
    }

    /// Checks the clock and the signature against `key`; then, in `store`, that the request
    /// was not accepted before (durably: across restarts and instances, see
    /// [`vaultmesh_store::seen`]).
    pub async fn verify(
        &self,
        key: &VerifyingKey,
        body: &[u8],
        store: &dyn vaultmesh_store::Store,
    ) -> Result<(), ApiError> {
        self.check_signature(key, body)?;
        self.remember(store).await
    }

    /// Checks the clock and the signature against `key` (nothing is remembered).
    pub fn check_signature(&self, key: &VerifyingKey, body: &[u8]) -> Result<(), ApiError> {
        self.check_clock()?;
        let msg = auth::request_message(
            &self.method,
            &self.path_and_query,
            &self.node_id,
            self.timestamp,
            body,
        );
        auth::verify(key, &self.signature, &msg).map_err(|e| {
            ApiError::Unauthorized(Refusal::BadSignature, format!("node {}: {e}", self.node_id))
        })
    }

    /// Remembers the request in the replay guard: `Ok` the first time it is seen.
    pub async fn remember(&self, store: &dyn vaultmesh_store::Store) -> Result<(), ApiError> {
        use vaultmesh_store::seen::{Seen, digest};
        match store
            .first_request(digest(&self.node_id, &self.signature))
            .await?
        {
            Seen::First => Ok(()),
            Seen::Again => Err(ApiError::Unauthorized(
                Refusal::Replay,
                "this exact request was already received (replayed request)".into(),
            )),
            Seen::Full => Err(ApiError::Unavailable(
                "too many signed requests within the replay window to remember another; retry later"
                    .into(),
            )),
        }
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
        // Everything that needs no body first: the headers, the clock, that the node is
        // enrolled and not revoked. Junk is refused without a byte of its body read (the
        // connection is then closed: `crate::timeout`), so it costs no memory and no time.
        let parts = SignedParts::from_request(&headers, &method, &path)?;
        parts.check_clock()?;
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
        // A body from an enrolled node's id is read within --body-timeout, and within the
        // bytes all bodies may hold at once (--body-memory): see `crate::timeout`. At most
        // `BODIES_PER_NODE` at once per node id, so that the id of one node (not a secret)
        // cannot take the whole budget from the others.
        let reading = Reading::start(&state.reading, parts.node_id)?;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(ApiError::from)?;
        drop(reading);
        parts.check_signature(&binding.key, &body)?;
        // Counted after the signature (nobody can spend another node's allowance) and before
        // the replay guard remembers the request: a node past its rate fills nothing, so one
        // node can hold at most burst + rate × window entries of the guard.
        state.rate_limit.check(parts.node_id)?;
        parts.remember(state.store.as_ref()).await?;
        Ok(Signed {
            node_id: parts.node_id,
            headers,
            body,
        })
    }
}

/// Signed request bodies one node id may have being received at once (beyond: `429`). An agent
/// sends one request at a time besides its long-poll, which has no body.
pub const BODIES_PER_NODE: usize = 4;

/// How many signed request bodies each node id has being received.
#[derive(Debug, Default)]
pub struct BodiesInFlight(Mutex<std::collections::HashMap<Uuid, usize>>);

/// One body being received for a node; counted out when dropped.
#[derive(Debug)]
struct Reading<'a> {
    all: &'a BodiesInFlight,
    node: Uuid,
}

impl<'a> Reading<'a> {
    fn start(all: &'a BodiesInFlight, node: Uuid) -> Result<Reading<'a>, ApiError> {
        let mut map = all.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(node).or_default();
        if *n >= BODIES_PER_NODE {
            return Err(ApiError::TooManyRequests {
                node,
                retry_after_s: 1,
            });
        }
        *n += 1;
        Ok(Reading { all, node })
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut map = self.all.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.node) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.node);
            }
        }
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

/// Enrollment attempts a second from one source, and the burst allowed (defaults of
/// `--enroll-rate`, `--enroll-burst`): a fleet behind one NAT enrolling at once is slowed, not
/// stopped — agents retry after `Retry-After`.
pub const ENROLL_RATE_PER_S: f64 = 1.0;
pub const ENROLL_BURST: u32 = 30;

/// Where a request comes from, for per-source limits: `Cf-Connecting-Ip` when the connection
/// is from loopback (cloudflared, which sets it; behind the tunnel every connection is from
/// 127.0.0.1), else the connection's own address. A direct client cannot pick its source by
/// sending the header.
pub fn source(
    headers: &HeaderMap,
    remote: Option<std::net::SocketAddr>,
) -> Option<std::net::IpAddr> {
    let remote = remote.map(|r| r.ip());
    if remote.is_none_or(|r| r.is_loopback())
        && let Some(ip) = headers
            .get(crate::refusals::CF_CONNECTING_IP)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    remote
}

/// The network a source address is counted by: an IPv4 address itself, an IPv6 address's
/// /64 — one host usually holds a whole /64, and could rotate through it past any per-address
/// limit.
pub fn network(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => std::net::IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
    }
}

/// Enrollment attempts per source network ([`source`], [`network`]).
#[derive(Debug)]
pub struct SourceRate(vaultmesh_engines::buckets::Buckets<Option<std::net::IpAddr>>);

impl SourceRate {
    pub fn new(rate: f64, burst: u32) -> SourceRate {
        SourceRate(vaultmesh_engines::buckets::Buckets::new(
            rate,
            f64::from(burst),
        ))
    }

    /// One attempt from `source`; `429` with `Retry-After` beyond the rate.
    pub fn check(&self, source: Option<std::net::IpAddr>) -> Result<(), ApiError> {
        self.0
            .take(&source.map(network), 1.0)
            .map_err(|retry_after_s| ApiError::TooManyEnrollments {
                from: source.map_or_else(|| "unknown".into(), |s| s.to_string()),
                retry_after_s,
            })
    }
}

/// Per-node rate limit of agent requests: a token bucket per node (`rate` requests a second,
/// up to `burst` at once). Beyond it, `429` with `Retry-After`; the agent backs off.
#[derive(Debug)]
pub struct RateLimit(vaultmesh_engines::buckets::Buckets<Uuid>);

impl RateLimit {
    pub fn new(rate: f64, burst: u32) -> RateLimit {
        RateLimit(vaultmesh_engines::buckets::Buckets::new(
            rate,
            f64::from(burst),
        ))
    }

    /// One request from `node`.
    pub fn check(&self, node: Uuid) -> Result<(), ApiError> {
        self.0
            .take(&node, 1.0)
            .map_err(|retry_after_s| ApiError::TooManyRequests {
                node,
                retry_after_s,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_sources_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let rate = SourceRate::new(0.001, 2);
        let in_64 =
            |i: u16| -> std::net::IpAddr { format!("2001:db8:1:2:{i:x}::{i:x}").parse().unwrap() };
        rate.check(Some(in_64(1))).unwrap();
        rate.check(Some(in_64(2))).unwrap();
        assert!(
            rate.check(Some(in_64(3))).is_err(),
            "another address in the same /64 is the same source"
        );
        rate.check(Some("2001:db8:1:3::1".parse().unwrap()))
            .expect("another /64 is another source");
        let v4: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(network(v4), v4);
        rate.check(Some("192.0.2.2".parse().unwrap())).unwrap();
    }

    #[test]
    fn the_rate_limit_answers_with_retry_after() {
        let rl = RateLimit::new(1000.0, 1);
        let n = Uuid::from_u128(1);
        rl.check(n).unwrap();
        assert!(matches!(
            rl.check(n),
            Err(ApiError::TooManyRequests {
                retry_after_s: 1,
                ..
            })
        ));
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
}
