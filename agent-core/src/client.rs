//! The agent's only network peer: outbound HTTP(S) requests to the Command Center.
//!
//! Every reply is read with a bound ([`read_body`]), so a hostile or broken peer cannot make
//! the agent buffer more than that: [`ACK_REPLY_MAX`] for the acknowledgements of heartbeats,
//! enrollments, scan reports and receipts (and any refusal's body), [`POLL_REPLY_MAX`] for a
//! command long-poll ([`POLL_BATCH_MAX`] commands of at most
//! [`vaultmesh_proto::command::COMMAND_MAX`] bytes). A longer reply is dropped unread.

use std::time::Duration;

use vaultmesh_proto::auth::{
    EnrollRequest, EnrollResponse, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NodeKey,
};
use vaultmesh_proto::command::{POLL_BATCH_MAX, POLL_REPLY_MAX, SignedCommand, SignedReceipt};
use vaultmesh_proto::session::{
    HEADER_MAC, HEADER_SESSION, SESSION_EVERY_SECS, SessionId, SessionKey, SharedSecret,
};
use vaultmesh_proto::{ErrorBody, HeartbeatAccepted, NodeHeartbeat, ScanReport};

use vaultmesh_process::error_chain;

/// Why a request to the Command Center failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect, TLS failed, timed out, or the body could not be read.
    #[error("cannot reach the Command Center at {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The Command Center refused the request (4xx); retrying the same request will not help.
    #[error("the Command Center refused the request ({status}): {error}")]
    Rejected { status: u16, error: String },
    /// The Command Center (or the tunnel in front of it) failed (5xx, 408, 429).
    #[error("the Command Center is unavailable ({status}): {error}")]
    Unavailable { status: u16, error: String },
    #[error("the Command Center sent a reply this agent cannot read: {0}")]
    BadReply(String),
    /// The reply was longer than this agent reads for that request; it was dropped unread.
    #[error("the Command Center's reply to {url} is larger than {limit} bytes; not read")]
    TooLarge { url: String, limit: usize },
}

/// Largest reply the agent reads to a heartbeat, an enrollment, a scan report or a receipt
/// (each a JSON acknowledgement of a few hundred bytes), and largest refusal body it reads.
pub const ACK_REPLY_MAX: usize = 64 * 1024;

/// Why a reply's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the reply is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{}", error_chain(.0))]
    Read(#[from] crate::http1::Error),
}

impl BodyError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, BodyError::Read(e) if e.is_timeout())
    }
}

/// Reads `resp`'s body, but no more than `limit` bytes: a longer one (by its `Content-Length`,
/// or once that many bytes have come) is dropped with the connection. Memory stays within
/// `limit` plus one read buffer of the HTTP stack.
pub async fn read_body(
    mut resp: crate::http1::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if chunk.len() > limit - body.len() {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether a MAC'd request was refused for its MAC: a `401` naming the signature header, as
/// a Command Center older than session MACs answers ("missing x-vaultmesh-signature header")
/// and this one does for a session it cannot take ("… sign the request
/// (x-vaultmesh-signature) instead"; `docs/PROTOCOL.md`, "Session MACs"). A refusal of the
/// node itself (not enrolled, revoked) or of a MAC that does not verify is not.
fn asks_for_a_signature(e: &ClientError) -> bool {
    matches!(e, ClientError::Rejected { status: 401, error } if error.contains(HEADER_SIGNATURE))
}

impl ClientError {
    /// Whether sending the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ClientError::Rejected { .. })
    }

    /// The Command Center does not know (or no longer accepts) this node's key.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Rejected { status: 401, .. })
    }
}

/// HTTP client for the Command Center's agent API. Every request is signed by the node key,
/// or carries a session MAC when the agent pins the Command Center's key (see
/// `docs/PROTOCOL.md`).
#[derive(Debug, Clone)]
pub struct CcClient {
    http: crate::http1::Client,
    base: String,
    node_id: uuid::Uuid,
    key: NodeKey,
    sessions: Option<std::sync::Arc<Sessions>>,
}

/// The agent's side of session MACs: the secret it shares with the pinned Command Center key,
/// the current session, and until when MACs are not sent after the Command Center refused one.
#[derive(Debug)]
struct Sessions {
    cc_public: String,
    secret: SharedSecret,
    state: std::sync::Mutex<SessionState>,
}

#[derive(Debug, Default)]
struct SessionState {
    current: Option<(SessionId, SessionKey)>,
    /// Sign every request until then (Unix seconds): the Command Center refused a MAC.
    signing_until: i64,
}

/// How a request proves it is from this node: header names and values.
type Credential = Vec<(&'static str, String)>;

/// The agent's HTTP client settings, shared by every outbound request (the Command Center,
/// local probes such as cloudflared's metrics): our user agent, the timeout, and no redirects —
/// a redirect could carry node data to another host.
pub fn http_client_builder(timeout: Duration) -> crate::http1::Builder {
    // The agent's HTTP client (crate::http1) follows no redirects and uses ring itself; ring is
    // also installed as the process's default, as before, for whatever else in the process
    // (the Command Center's demo fleet) builds a rustls config without naming a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::http1::Builder::new(timeout, timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("vaultmesh-node-agent/", env!("CARGO_PKG_VERSION")))
}

impl CcClient {
    /// `base` is the Command Center's URL without a trailing slash.
    pub fn new(
        base: &str,
        timeout: Duration,
        node_id: uuid::Uuid,
        key: NodeKey,
        access: Option<&(String, crate::config::Secret)>,
    ) -> Result<Self, ClientError> {
        let mut headers = http::HeaderMap::new();
        if let Some((id, secret)) = access {
            let bad = |what: &str| ClientError::Transport {
                url: base.to_string(),
                reason: format!(
                    "the Cloudflare Access service token's {what} is not a valid header value"
                ),
            };
            let mut secret = http::HeaderValue::from_str(&secret.0).map_err(|_| bad("secret"))?;
            secret.set_sensitive(true);
            headers.insert(
                "cf-access-client-id",
                http::HeaderValue::from_str(id).map_err(|_| bad("id"))?,
            );
            headers.insert("cf-access-client-secret", secret);
        }
        let mut builder = http_client_builder(timeout).default_headers(headers);
        // A Command Center on this machine is reached directly: an HTTP_PROXY from the
        // environment would otherwise carry a plain-http loopback exchange off the host.
        if base
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(crate::config::is_loopback_host))
            .unwrap_or(false)
        {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| ClientError::Transport {
            url: base.to_string(),
            reason: e.to_string(),
        })?;
        Ok(CcClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            node_id,
            key,
            sessions: None,
        })
    }

    /// The client an agent with `config` uses: its Command Center, request timeout and Access
    /// service token, and session MACs when it pins the Command Center's key.
    pub fn for_agent(
        config: &crate::config::AgentConfig,
        node_id: uuid::Uuid,
        key: NodeKey,
    ) -> Result<CcClient, ClientError> {
        let client = CcClient::new(
            &config.cc_url,
            config.request_timeout,
            node_id,
            key,
            config.access_service_token.as_ref(),
        )?;
        Ok(match config.cc_public_key.as_deref() {
            Some(cc_public) => client.with_sessions(cc_public),
            None => client,
        })
    }

    /// Sends session MACs instead of signatures, with the Command Center key `cc_public`
    /// (base64, the pinned `cc_public_key`). Signing goes on if that key cannot share a
    /// secret (a low-order point; said once, here).
    pub fn with_sessions(mut self, cc_public: &str) -> CcClient {
        let shared = vaultmesh_proto::auth::parse_public_key(cc_public)
            .map_err(|e| e.to_string())
            .and_then(|k| SharedSecret::between(&self.key, &k).map_err(|e| e.to_string()));
        match shared {
            Ok(secret) => {
                self.sessions = Some(std::sync::Arc::new(Sessions {
                    cc_public: cc_public.trim().to_string(),
                    secret,
                    state: std::sync::Mutex::default(),
                }));
            }
            Err(e) => tracing::warn!(
                error = %e,
                "The pinned Command Center key cannot be used for session MACs; every request is signed instead."
            ),
        }
        self
    }

    /// The session MAC headers for a request at `now`, starting a new session when none is
    /// current or the current one is [`SESSION_EVERY_SECS`] old; `None` when requests are
    /// signed (no pinned key, or a MAC was refused within the hour).
    fn mac(&self, method: &str, path: &str, now: i64, body: &[u8]) -> Option<Credential> {
        let sessions = self.sessions.as_ref()?;
        let mut state = sessions.state.lock().unwrap_or_else(|p| p.into_inner());
        if now < state.signing_until {
            return None;
        }
        let fresh =
            |(s, _): &(SessionId, SessionKey)| (0..SESSION_EVERY_SECS).contains(&(now - s.start));
        if !state.current.as_ref().is_some_and(fresh) {
            let session = SessionId::new(&sessions.cc_public, now, rand::random());
            let key = sessions.secret.session_key(&self.node_id, &session);
            state.current = Some((session, key));
        }
        let (session, key) = state.current.as_ref()?;
        let msg =
            vaultmesh_proto::session::mac_message(method, path, &self.node_id, now, session, body);
        Some(vec![
            (HEADER_NODE, self.node_id.to_string()),
            (HEADER_TIMESTAMP, now.to_string()),
            (HEADER_SESSION, session.to_string()),
            (HEADER_MAC, key.mac(&msg)),
        ])
    }

    /// A MAC'd request was refused for its MAC: sign for the next [`SESSION_EVERY_SECS`] —
    /// the Command Center is older than session MACs, or does not hold the pinned key.
    fn sign_for_a_while(&self, now: i64) {
        if let Some(sessions) = &self.sessions {
            let mut state = sessions.state.lock().unwrap_or_else(|p| p.into_inner());
            // Requests in flight together can all be refused: said once, when signing starts.
            let signing = state.signing_until > now;
            state.signing_until = now + SESSION_EVERY_SECS;
            state.current = None;
            if signing {
                return;
            }
            tracing::info!(
                "The Command Center refused a session MAC; signing every request for the next hour."
            );
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /api/agent/heartbeat`.
    pub async fn post_heartbeat(
        &self,
        hb: &NodeHeartbeat,
    ) -> Result<HeartbeatAccepted, ClientError> {
        self.post_signed("/api/agent/heartbeat", hb).await
    }

    /// `POST /api/agent/enroll` with `token`.
    pub async fn enroll(
        &self,
        hostname: &str,
        os_profile: &str,
        token: &str,
    ) -> Result<EnrollResponse, ClientError> {
        let req = EnrollRequest {
            node_id: self.node_id,
            public_key: self.key.public_base64(),
            hostname: hostname.to_string(),
            os_profile: os_profile.to_string(),
            token: token.to_string(),
            nonce: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        // Signed, never MAC'd: the enrollment proves it holds the key it enrolls.
        let bytes = serde_json::to_vec(&req).map_err(|e| ClientError::BadReply(e.to_string()))?;
        let now = chrono::Utc::now().timestamp();
        let signature = self.signature("POST", "/api/agent/enroll", now, &bytes);
        self.send(
            "POST",
            "/api/agent/enroll",
            bytes,
            None,
            ACK_REPLY_MAX,
            signature,
        )
        .await
    }

    /// `GET /api/agent/commands?wait=…`: blocks up to `wait` for commands for this node (at
    /// most [`POLL_BATCH_MAX`] at a time; a longer reply is refused as [`ClientError::TooLarge`]).
    pub async fn poll_commands(&self, wait: Duration) -> Result<Vec<SignedCommand>, ClientError> {
        // The nonce makes every poll's signature unique: without it, a poll right after one
        // that returned within the same second would be byte-identical and refused as a replay.
        let path = format!(
            "/api/agent/commands?wait={}s&nonce={:016x}",
            wait.as_secs(),
            rand::random::<u64>()
        );
        let commands: Vec<SignedCommand> = self
            .signed(
                "GET",
                &path,
                Vec::new(),
                Some(wait + Duration::from_secs(15)),
                POLL_REPLY_MAX,
            )
            .await?;
        if commands.len() > POLL_BATCH_MAX {
            return Err(ClientError::BadReply(format!(
                "{} commands in one reply; at most {POLL_BATCH_MAX}",
                commands.len()
            )));
        }
        Ok(commands)
    }

    /// `POST /api/agent/scans`.
    pub async fn post_scan(&self, report: &ScanReport) -> Result<serde_json::Value, ClientError> {
        self.post_signed("/api/agent/scans", report).await
    }

    /// `POST /api/agent/receipts?nonce=…`. A receipt is resent unchanged when its reply was
    /// lost; the nonce keeps the resend's request signature from being the first's (a replay).
    pub async fn post_receipt(
        &self,
        receipt: &SignedReceipt,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/api/agent/receipts?nonce={:016x}", rand::random::<u64>());
        self.post_signed(&path, receipt).await
    }

    /// `POST /api/agent/events?nonce=…`: a note or an incident about this node. The nonce
    /// keeps two identical events in one second from being one request and its replay.
    pub async fn post_event(
        &self,
        event: &crate::events::AgentEventBody,
    ) -> Result<vaultmesh_proto::EventEnvelope, ClientError> {
        let path = format!("/api/agent/events?nonce={:016x}", rand::random::<u64>());
        self.post_signed(&path, event).await
    }

    /// POSTs `body` as JSON to `path` with a session MAC or signed by the node key ([`CcClient::signed`]); parses a JSON reply.
    async fn post_signed<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::BadReply(e.to_string()))?;
        self.signed("POST", path, bytes, None, ACK_REPLY_MAX).await
    }

    /// Sends a request with a session MAC, or signed: `timeout` overrides the client's
    /// (long-polls). A MAC'd request the Command Center refuses for its MAC
    /// ([`asks_for_a_signature`]) is sent again at once, signed. A successful reply is read up to `limit` bytes, a refusal up to
    /// [`ACK_REPLY_MAX`].
    async fn signed<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        bytes: Vec<u8>,
        timeout: Option<Duration>,
        limit: usize,
    ) -> Result<R, ClientError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(mac) = self.mac(method, path, now, &bytes) {
            match self
                .send(method, path, bytes.clone(), timeout, limit, mac)
                .await
            {
                Err(e) if asks_for_a_signature(&e) => self.sign_for_a_while(now),
                done => return done,
            }
        }
        let signature = self.signature(method, path, now, &bytes);
        self.send(method, path, bytes, timeout, limit, signature)
            .await
    }

    /// The signature headers of a request at `now`.
    fn signature(&self, method: &str, path: &str, now: i64, body: &[u8]) -> Credential {
        let h = self
            .key
            .sign_request(method, path, &self.node_id, now, body);
        vec![
            (HEADER_NODE, h.node),
            (HEADER_TIMESTAMP, h.timestamp),
            (HEADER_SIGNATURE, h.signature),
        ]
    }

    /// Sends one request with `credential`'s headers and reads its reply.
    async fn send<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        bytes: Vec<u8>,
        timeout: Option<Duration>,
        limit: usize,
        credential: Credential,
    ) -> Result<R, ClientError> {
        let url = format!("{}{path}", self.base);
        let m = http::Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::BadReply(e.to_string()))?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in credential {
            let value =
                http::HeaderValue::from_str(&value).map_err(|e| ClientError::Transport {
                    url: url.clone(),
                    reason: format!("{name}: {e}"),
                })?;
            headers.insert(crate::http1::name(name), value);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let resp = self
            .http
            .request(m, &url, headers, bytes, timeout)
            .await
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                reason: error_chain(&e),
            })?;
        let status = resp.status();
        let limit = if status.is_success() {
            limit
        } else {
            ACK_REPLY_MAX
        };
        let bytes = read_body(resp, limit).await.map_err(|e| match e {
            BodyError::TooLarge { limit } => ClientError::TooLarge {
                url: url.clone(),
                limit,
            },
            BodyError::Read(e) => ClientError::Transport {
                url: url.clone(),
                reason: error_chain(&e),
            },
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::BadReply(e.to_string()));
        }
        let error = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| {
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
            });
        let code = status.as_u16();
        if status.is_server_error() || code == 408 || code == 429 {
            Err(ClientError::Unavailable {
                status: code,
                error,
            })
        } else {
            Err(ClientError::Rejected {
                status: code,
                error,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn client_at(url: &str, access: Option<&(String, crate::config::Secret)>) -> CcClient {
        CcClient::new(
            url,
            Duration::from_secs(5),
            uuid::Uuid::nil(),
            NodeKey::from_seed([1; 32]),
            access,
        )
        .unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// One request to a bare socket: what the agent put on the wire.
    fn capture(access: Option<&(String, crate::config::Secret)>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 16 * 1024];
            let n = s.read(&mut buf).unwrap();
            let _ = s.write_all(
                b"HTTP/1.1 500 No\\r\\ncontent-length: 0\\r\\nconnection: close\\r\\n\\r\\n",
            );
            String::from_utf8_lossy(&buf[..n]).to_lowercase()
        });
        let client = client_at(&url, access);
        let _ = runtime().block_on(client.poll_commands(Duration::from_secs(1)));
        server.join().unwrap()
    }

    #[test]
    fn a_refusal_naming_the_signature_header_is_what_turns_macs_off() {
        let refused = |error: &str| ClientError::Rejected {
            status: 401,
            error: error.into(),
        };
        // What the release before session MACs answers to a MAC'd request, word for word.
        assert!(asks_for_a_signature(&refused(
            "missing x-vaultmesh-signature header: agent requests must be signed by the node key"
        )));
        assert!(asks_for_a_signature(&refused(
            "this Command Center has no command key (--signing-key), so it takes no session MACs; sign the request (x-vaultmesh-signature) instead"
        )));
        // The node itself refused, or a MAC that does not verify: signing would not help.
        assert!(!asks_for_a_signature(&refused("node 1 is not enrolled")));
        assert!(!asks_for_a_signature(&refused(
            "node 1: MAC does not verify"
        )));
        assert!(!asks_for_a_signature(&ClientError::Rejected {
            status: 403,
            error: "x-vaultmesh-signature".into()
        }));
    }

    #[test]
    fn a_cloudflare_access_service_token_rides_on_every_request() {
        let token = (
            "0123.access".to_string(),
            crate::config::Secret("s3cret-value".into()),
        );
        let req = capture(Some(&token));
        assert!(req.contains("cf-access-client-id: 0123.access"), "{req}");
        assert!(
            req.contains("cf-access-client-secret: s3cret-value"),
            "{req}"
        );
        assert!(
            req.contains("x-vaultmesh-signature:"),
            "still signed: {req}"
        );
        let plain = capture(None);
        assert!(!plain.contains("cf-access-client"), "{plain}");
    }

    /// Answers one request with `head` and then up to 8 MiB of `x` in 64 KiB chunks (chunked
    /// encoding unless `head` sets a length), until the client hangs up; returns the bytes the
    /// client took before it did.
    fn oversized(head: &'static str) -> (String, std::thread::JoinHandle<usize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 16 * 1024];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            let chunked = head.contains("chunked");
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < 8 * 1024 * 1024 {
                let ok = if chunked {
                    s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .and_then(|()| s.write_all(&chunk))
                        .and_then(|()| s.write_all(b"\r\n"))
                } else {
                    s.write_all(&chunk)
                };
                if ok.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        (url, server)
    }

    #[test]
    fn replies_are_read_only_up_to_their_bound() {
        let hb: NodeHeartbeat = serde_json::from_value(serde_json::json!({
            "node_id": uuid::Uuid::nil(), "hostname": "h", "os_profile": "Generic",
            "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/",
            "timestamp": chrono::Utc::now(),
        }))
        .unwrap();
        for head in [
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 500 No\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            let (url, server) = oversized(head);
            let rt = runtime();
            let client = client_at(&url, None);
            let err = rt.block_on(client.post_heartbeat(&hb)).unwrap_err();
            assert!(
                matches!(
                    err,
                    ClientError::TooLarge {
                        limit: ACK_REPLY_MAX,
                        ..
                    }
                ),
                "{head:?}: {err}"
            );
            assert!(err.is_retryable());
            // The connection's task lives in the runtime: dropping it hangs up.
            drop(client);
            drop(rt);
            let sent = server.join().unwrap();
            assert!(
                sent < 8 * 1024 * 1024,
                "{head:?}: the agent hung up ({sent} bytes sent)"
            );
        }
    }
}
