//! The agent's only network peer: outbound HTTP(S) requests to the Command Center.

use std::time::Duration;

use vaultmesh_proto::auth::{
    EnrollRequest, EnrollResponse, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NodeKey,
};
use vaultmesh_proto::command::{SignedCommand, SignedReceipt};
use vaultmesh_proto::{ErrorBody, HeartbeatAccepted, NodeHeartbeat, ScanReport};

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

/// HTTP client for the Command Center's agent API. Every request is signed by the node key
/// (see `docs/PROTOCOL.md`).
#[derive(Debug, Clone)]
pub struct CcClient {
    http: reqwest::Client,
    base: String,
    node_id: uuid::Uuid,
    key: NodeKey,
}

/// The agent's HTTP client settings, shared by every outbound request (the Command Center,
/// local probes such as cloudflared's metrics): our user agent, the timeout, and no redirects —
/// a redirect could carry node data to another host.
pub fn http_client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    // reqwest is built without a default crypto provider; ring is ours. Installing twice is
    // harmless (the second call reports the first provider, which we ignore).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("vaultmesh-node-agent/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
}

/// reqwest's Display hides the cause ("error sending request"); walk the chain for the reason.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
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
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some((id, secret)) = access {
            let bad = |what: &str| ClientError::Transport {
                url: base.to_string(),
                reason: format!(
                    "the Cloudflare Access service token's {what} is not a valid header value"
                ),
            };
            let mut secret =
                reqwest::header::HeaderValue::from_str(&secret.0).map_err(|_| bad("secret"))?;
            secret.set_sensitive(true);
            headers.insert(
                "cf-access-client-id",
                reqwest::header::HeaderValue::from_str(id).map_err(|_| bad("id"))?,
            );
            headers.insert("cf-access-client-secret", secret);
        }
        let http = http_client_builder(timeout)
            .default_headers(headers)
            .build()
            .map_err(|e| ClientError::Transport {
                url: base.to_string(),
                reason: e.to_string(),
            })?;
        Ok(CcClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            node_id,
            key,
        })
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
        self.post_signed("/api/agent/enroll", &req).await
    }

    /// `GET /api/agent/commands?wait=…`: blocks up to `wait` for commands for this node.
    pub async fn poll_commands(&self, wait: Duration) -> Result<Vec<SignedCommand>, ClientError> {
        // The nonce makes every poll's signature unique: without it, a poll right after one
        // that returned within the same second would be byte-identical and refused as a replay.
        let path = format!(
            "/api/agent/commands?wait={}s&nonce={:016x}",
            wait.as_secs(),
            rand::random::<u64>()
        );
        self.signed(
            "GET",
            &path,
            Vec::new(),
            Some(wait + Duration::from_secs(15)),
        )
        .await
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

    /// POSTs `body` as JSON to `path`, signed by the node key; parses a JSON reply.
    async fn post_signed<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::BadReply(e.to_string()))?;
        self.signed("POST", path, bytes, None).await
    }

    /// Sends a signed request; `timeout` overrides the client's (long-polls).
    async fn signed<R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        bytes: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<R, ClientError> {
        let url = format!("{}{path}", self.base);
        let now = chrono::Utc::now().timestamp();
        let h = self
            .key
            .sign_request(method, path, &self.node_id, now, &bytes);
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::BadReply(e.to_string()))?;
        let mut req = self.http.request(m, &url);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_NODE, h.node)
            .header(HEADER_TIMESTAMP, h.timestamp)
            .header(HEADER_SIGNATURE, h.signature)
            .body(bytes)
            .send()
            .await
            .map_err(|e| ClientError::Transport {
                url: url.clone(),
                reason: error_chain(&e),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
            url: url.clone(),
            reason: error_chain(&e),
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
        let client = CcClient::new(
            &url,
            Duration::from_secs(5),
            uuid::Uuid::nil(),
            NodeKey::from_seed([1; 32]),
            access,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = rt.block_on(client.poll_commands(Duration::from_secs(1)));
        server.join().unwrap()
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
}
