//! Test nodes that enroll and sign requests exactly as the agent does (`docs/PROTOCOL.md`),
//! so tests can post heartbeats straight to the real server and still go through its checks.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};
use uuid::Uuid;
use vaultmesh_proto::auth::{
    EnrollRequest, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NodeKey,
};

use vaultmesh_proto::command::{CommandReceipt, ReceiptStatus, SignedReceipt};

use crate::{TEST_TOKEN, http};

/// The node used when a body names none.
pub const DEFAULT_NODE: &str = "00000000-0000-4000-8000-0000000000ff";

/// A node id with a key derived from it (stable across calls, different per node).
#[derive(Debug, Clone)]
pub struct TestNode {
    pub id: Uuid,
    pub key: NodeKey,
}

impl TestNode {
    pub fn new(id: Uuid) -> TestNode {
        TestNode::with_key(id, 0)
    }

    /// The same node id with another key (an impostor, or a re-keyed node).
    pub fn with_key(id: Uuid, variant: u8) -> TestNode {
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        h.update([variant]);
        TestNode {
            id,
            key: NodeKey::from_seed(h.finalize().into()),
        }
    }

    /// The node a request body is for: its `node_id`, else [`DEFAULT_NODE`].
    pub fn for_body(body: &[u8]) -> TestNode {
        let id = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v.get("node_id")?
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
            })
            .unwrap_or_else(|| Uuid::parse_str(DEFAULT_NODE).unwrap_or_default());
        TestNode::new(id)
    }

    /// Enrolls with [`TEST_TOKEN`] unless this process already did for this server.
    pub fn enroll(&self, base: &str) {
        static DONE: OnceLock<Mutex<HashSet<(String, Uuid, String)>>> = OnceLock::new();
        let done = DONE.get_or_init(|| Mutex::new(HashSet::new()));
        let entry = (base.to_string(), self.id, self.key.public_base64());
        if done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&entry)
        {
            return;
        }
        let status = self.enroll_with(base, TEST_TOKEN);
        assert!(
            status == 200,
            "test node {} could not enroll: {status}",
            self.id
        );
        done.lock().unwrap_or_else(|p| p.into_inner()).insert(entry);
    }

    /// Sends an enrollment with `token`; returns the status.
    pub fn enroll_with(&self, base: &str, token: &str) -> u16 {
        self.enroll_reply(base, token).status
    }

    /// Sends an enrollment with `token`; returns the reply.
    pub fn enroll_reply(&self, base: &str, token: &str) -> crate::Reply {
        let req = EnrollRequest {
            node_id: self.id,
            public_key: self.key.public_base64(),
            hostname: format!("test-{}", &self.id.to_string()[..8]),
            os_profile: "ArchVault".into(),
            token: token.into(),
            nonce: Some(Uuid::new_v4().simple().to_string()),
        };
        let body = serde_json::to_vec(&req).unwrap_or_default();
        match self
            .signed(
                base,
                "POST",
                "/api/agent/enroll",
                Some("application/json"),
                body,
            )
            .send()
        {
            Ok(r) => crate::Reply::from(r),
            Err(e) => crate::Reply {
                status: 0,
                content_type: String::new(),
                body: e.to_string(),
            },
        }
    }

    /// A request signed by this node now.
    pub fn signed(
        &self,
        base: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::blocking::RequestBuilder {
        let ts = unique_timestamp(self.id, &body);
        self.signed_at(base, method, path, content_type, body, ts)
    }

    /// A request signed by this node with the given timestamp.
    pub fn signed_at(
        &self,
        base: &str,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        ts: i64,
    ) -> reqwest::blocking::RequestBuilder {
        let h = self.key.sign_request(method, path, &self.id, ts, &body);
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut req = http()
            .request(method, format!("{base}{path}"))
            .header(HEADER_NODE, h.node)
            .header(HEADER_TIMESTAMP, h.timestamp)
            .header(HEADER_SIGNATURE, h.signature)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req
    }

    /// A request with a session MAC (`docs/PROTOCOL.md`, "Session MACs") for the Command
    /// Center key `cc_public`, in the session that started at `start` with `nonce`, at
    /// timestamp `ts`.
    #[allow(clippy::too_many_arguments)]
    pub fn mac_request(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
        cc_public: &str,
        (start, nonce): (i64, [u8; 16]),
        ts: i64,
    ) -> reqwest::blocking::RequestBuilder {
        use vaultmesh_proto::session::{HEADER_MAC, HEADER_SESSION, SessionId, SharedSecret};
        let cc = vaultmesh_proto::auth::parse_public_key(cc_public).expect("a public key");
        let session = SessionId::new(cc_public, start, nonce);
        let key = SharedSecret::between(&self.key, &cc)
            .expect("not a low-order key")
            .session_key(&self.id, &session);
        let msg =
            vaultmesh_proto::session::mac_message(method, path, &self.id, ts, &session, &body);
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
        http()
            .request(method, format!("{base}{path}"))
            .header("content-type", "application/json")
            .header(HEADER_NODE, self.id.to_string())
            .header(HEADER_TIMESTAMP, ts.to_string())
            .header(HEADER_SESSION, session.to_string())
            .header(HEADER_MAC, key.mac(&msg))
            .body(body)
    }

    /// An `ok` receipt for `command_id` answering "pong", chained to `prev` (a receipt's
    /// [`SignedReceipt::chain_hash`]).
    pub fn pong_receipt(&self, command_id: Uuid, prev: Option<String>) -> CommandReceipt {
        let now = chrono::Utc::now();
        CommandReceipt {
            command_id,
            node_id: self.id,
            status: ReceiptStatus::Ok,
            reason: None,
            exit_code: Some(0),
            output: "pong".into(),
            truncated: false,
            output_sha256: vaultmesh_proto::canonical::sha256_hex(b"pong"),
            started_at: now,
            finished_at: now,
            prev_receipt_sha256: prev,
        }
    }

    /// `POST /api/agent/receipts` with `receipt` signed by `key`, the request by this node.
    pub fn post_receipt(
        &self,
        base: &str,
        receipt: CommandReceipt,
        key: &NodeKey,
    ) -> reqwest::Result<reqwest::blocking::Response> {
        let body = serde_json::to_vec(&SignedReceipt::sign(receipt, key)).unwrap_or_default();
        self.signed(
            base,
            "POST",
            "/api/agent/receipts",
            Some("application/json"),
            body,
        )
        .send()
    }

    /// `POST /api/agent/heartbeat` with `body`, signed (enrolling first if needed).
    pub fn post_heartbeat(
        &self,
        base: &str,
        body: &serde_json::Value,
    ) -> reqwest::Result<reqwest::blocking::Response> {
        self.heartbeat_request(base, body).send()
    }

    /// The signed heartbeat of [`TestNode::post_heartbeat`], not yet sent (to add headers).
    pub fn heartbeat_request(
        &self,
        base: &str,
        body: &serde_json::Value,
    ) -> reqwest::blocking::RequestBuilder {
        self.enroll(base);
        self.signed(
            base,
            "POST",
            "/api/agent/heartbeat",
            Some("application/json"),
            serde_json::to_vec(body).unwrap_or_default(),
        )
    }
}

/// Now, or a second earlier than any timestamp this node already used with the same body: Ed25519
/// is deterministic, so an identical body at an identical second would be a replay.
fn unique_timestamp(node: Uuid, body: &[u8]) -> i64 {
    type Used = Mutex<HashSet<(Uuid, [u8; 32], i64)>>;
    static USED: OnceLock<Used> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    let digest: [u8; 32] = Sha256::digest(body).into();
    let mut used = used.lock().unwrap_or_else(|p| p.into_inner());
    let mut ts = chrono::Utc::now().timestamp();
    while !used.insert((node, digest, ts)) {
        ts -= 1;
    }
    ts
}
