//! The HTTP side of agent authentication: the `Signed` extractor that verifies the node
//! signature on every `/api/agent/*` request but enrollment (see `docs/PROTOCOL.md`), and where
//! a request comes from for per-source limits. The checks themselves are the engines'
//! ([`vaultmesh_engines::auth`], [`vaultmesh_engines::limits`]); their refusals become HTTP
//! answers in [`crate::error`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::HeaderMap;
use uuid::Uuid;
use vaultmesh_engines::auth::{Sessions, SignedParts};
use vaultmesh_engines::limits::{BodiesInFlight, RateLimit};

use crate::error::ApiError;

/// Enrollment attempts a second from one source, and the burst allowed (defaults of
/// `--enroll-rate`, `--enroll-burst`): a fleet behind one NAT enrolling at once is slowed, not
/// stopped — agents retry after `Retry-After`.
pub const ENROLL_RATE_PER_S: f64 = 1.0;
pub const ENROLL_BURST: u32 = 30;

/// What [`Signed`] needs of the server's state: the store (the node's key, the replay guard),
/// the per-node request rate and the bodies being received per node. The server's state
/// provides it through [`FromRef`].
#[derive(Debug, Clone)]
pub struct AgentAuth {
    pub store: Arc<dyn vaultmesh_store::Store>,
    pub rate_limit: Arc<RateLimit>,
    pub reading: Arc<BodiesInFlight>,
    /// The session keys a session MAC is checked with.
    pub sessions: Arc<Sessions>,
    /// Requests verified, by credential (`vaultmesh_agent_requests_verified_total`).
    pub verified: Option<prometheus::IntCounterVec>,
}

/// The signature headers of `headers`, by name, as [`SignedParts::parse`] reads them.
pub fn signed_parts(
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
) -> Result<SignedParts, ApiError> {
    let header = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok());
    Ok(SignedParts::parse(header, method, path_and_query)?)
}

/// A request verified as coming from an enrolled, unrevoked node: its id and raw body.
#[derive(Debug)]
pub struct Signed {
    pub node_id: Uuid,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl<S> FromRequest<S> for Signed
where
    S: Send + Sync,
    AgentAuth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(mut req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let auth = AgentAuth::from_ref(state);
        let method = req.method().as_str().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        // Taken, not copied: reading the body as `Bytes` looks at none of them (an extractor
        // that checks `Content-Type`, such as `Json`, would need them put back).
        let headers = std::mem::take(req.headers_mut());
        // Everything that needs no body first: the headers, the clock, that the node is
        // enrolled and not revoked. Junk is refused without a byte of its body read (the
        // connection is then closed: `crate::timeout`), so it costs no memory and no time.
        let parts = signed_parts(&headers, &method, &path)?;
        parts.check_clock()?;
        parts.check_session(&auth.sessions)?;
        let key = parts.enrolled_key(auth.store.as_ref())?;
        // A body from an enrolled node's id is read within --body-timeout, and within the
        // bytes all bodies may hold at once (--body-memory): see `crate::timeout`. At most
        // `BODIES_PER_NODE` at once per node id, so that the id of one node (not a secret)
        // cannot take the whole budget from the others.
        let reading = auth.reading.start(parts.node_id)?;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(ApiError::from)?;
        drop(reading);
        parts.check_credential(&key, &body, &auth.sessions)?;
        if let Some(verified) = &auth.verified {
            verified.with_label_values(&[parts.credential.kind()]).inc();
        }
        // Counted after the signature (nobody can spend another node's allowance) and before
        // the replay guard remembers the request: a node past its rate fills nothing, so one
        // node can hold at most burst + rate × window entries of the guard.
        auth.rate_limit.check(parts.node_id)?;
        parts.remember(auth.store.as_ref()).await?;
        Ok(Signed {
            node_id: parts.node_id,
            headers,
            body,
        })
    }
}

/// Where a request comes from, for per-source limits: `Cf-Connecting-Ip` when the connection
/// is from loopback (cloudflared, which sets it; behind the tunnel every connection is from
/// 127.0.0.1), else the connection's own address. A direct client cannot pick its source by
/// sending the header.
pub fn source(headers: &HeaderMap, remote: Option<SocketAddr>) -> Option<IpAddr> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;
    use vaultmesh_proto::auth::{HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NodeKey};

    /// A state that is not the server's: [`Signed`] asks it only for an [`AgentAuth`].
    #[derive(Clone)]
    struct Other(AgentAuth);

    impl FromRef<Other> for AgentAuth {
        fn from_ref(state: &Other) -> Self {
            state.0.clone()
        }
    }

    async fn answer(
        app: &Router,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> (StatusCode, String) {
        let mut req = Request::post("/api/agent/test");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn signed_is_extracted_from_any_state_that_provides_its_substate() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Arc::new(vaultmesh_store::bus::Bus::new(16, 16));
        let (store, _) = vaultmesh_store::JsonlStore::open(
            &vaultmesh_store::StoreOptions::new(dir.path().to_path_buf()),
            bus,
        )
        .unwrap();
        let key = NodeKey::from_seed([3; 32]);
        let node = Uuid::from_u128(3);
        let enroll = vaultmesh_proto::auth::EnrollRequest {
            node_id: node,
            public_key: key.public_base64(),
            hostname: "n3".into(),
            os_profile: "Generic".into(),
            token: "0123456789abcdef".into(),
            nonce: None,
        };
        let token = vaultmesh_store::tokens::TokenUse::Configured {
            id: "t".into(),
            single_use: false,
        };
        vaultmesh_store::Store::enroll(&store, &enroll, token)
            .await
            .unwrap();
        let app = Router::new()
            .route(
                "/api/agent/test",
                axum::routing::post(|signed: Signed| async move {
                    format!("{} sent {} bytes", signed.node_id, signed.body.len())
                }),
            )
            .with_state(Other(AgentAuth {
                store: Arc::new(store),
                rate_limit: Arc::new(RateLimit::new(100.0, 10)),
                reading: Arc::default(),
                sessions: Arc::new(Sessions::new(None)),
                verified: None,
            }));

        let at = chrono::Utc::now().timestamp();
        let signed = key.sign_request("POST", "/api/agent/test", &node, at, b"{}");
        let headers = [
            (HEADER_NODE, signed.node.as_str()),
            (HEADER_TIMESTAMP, signed.timestamp.as_str()),
            (HEADER_SIGNATURE, signed.signature.as_str()),
        ];
        assert_eq!(
            answer(&app, &headers, b"{}").await,
            (StatusCode::OK, format!("{node} sent 2 bytes"))
        );
        let (status, body) = answer(&app, &headers, b"{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("replayed request"), "{body}");
        let (status, body) = answer(&app, &headers[..2], b"{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body.contains("missing x-vaultmesh-signature header"),
            "{body}"
        );
    }
}
