//! How agents prove who they are: an Ed25519 node key, enrollment, and signed requests.
//!
//! Every agent request after enrollment carries three headers — the node id, a Unix timestamp,
//! and an Ed25519 signature by the node key over
//!
//! ```text
//! vaultmesh-request-v1\n<METHOD>\n<path?query>\n<node id>\n<timestamp>\n<hex sha256 of the body>
//! ```
//!
//! The domain tag keeps these signatures from ever being valid for anything else (commands,
//! receipts). See `docs/PROTOCOL.md` for the worked example.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// First line of every signed request message.
pub const REQUEST_DOMAIN: &str = "vaultmesh-request-v1";
pub const HEADER_NODE: &str = "x-vaultmesh-node";
pub const HEADER_TIMESTAMP: &str = "x-vaultmesh-timestamp";
pub const HEADER_SIGNATURE: &str = "x-vaultmesh-signature";
/// Largest accepted difference between the node's clock and the Command Center's.
pub const MAX_SKEW_SECS: i64 = 300;

/// The public keys of the worked example in `docs/PROTOCOL.md` (the node key, seed 32 × 0x07,
/// and the Command Center key, seed 32 × 0x03): their private keys are published, so neither
/// is ever a key to trust — not as an agent's pinned Command Center key, nor as a Command
/// Center's signing key.
pub const PUBLISHED_KEYS: [&str; 2] = [
    "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=",
    "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E=",
];

/// Whether `public_b64` is one of the [`PUBLISHED_KEYS`].
pub fn is_published(public_b64: &str) -> bool {
    PUBLISHED_KEYS.contains(&public_b64.trim())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0} is not a base64 Ed25519 public key")]
    BadPublicKey(String),
    #[error("the node key file does not hold a base64 32-byte Ed25519 seed")]
    BadSecretKey,
    #[error("signature is not 64 bytes of base64")]
    BadSignatureEncoding,
    #[error("signature does not verify")]
    BadSignature,
}

/// The bytes a request signature covers.
pub fn request_message(
    method: &str,
    path_and_query: &str,
    node_id: &Uuid,
    timestamp: i64,
    body: &[u8],
) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("{REQUEST_DOMAIN}\n{method}\n{path_and_query}\n{node_id}\n{timestamp}\n{body_hash}")
        .into_bytes()
}

/// A node's private key. Its file form is the base64 of the 32-byte seed.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "NodeKey(public {})", self.public_base64())
    }
}

impl NodeKey {
    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        NodeKey(SigningKey::from_bytes(&seed))
    }

    /// Parses the key file's content.
    pub fn from_base64(text: &str) -> Result<NodeKey, AuthError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| AuthError::BadSecretKey)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| AuthError::BadSecretKey)?;
        Ok(NodeKey::from_seed(seed))
    }

    /// The key file's content.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.0.verifying_key().to_bytes())
    }

    /// Signs a request; returns the three header values (node, timestamp, signature).
    pub fn sign_request(
        &self,
        method: &str,
        path_and_query: &str,
        node_id: &Uuid,
        timestamp: i64,
        body: &[u8],
    ) -> SignedHeaders {
        let msg = request_message(method, path_and_query, node_id, timestamp, body);
        let sig: Signature = self.0.sign(&msg);
        SignedHeaders {
            node: node_id.to_string(),
            timestamp: timestamp.to_string(),
            signature: STANDARD.encode(sig.to_bytes()),
        }
    }

    /// The Ed25519 key itself, for [`crate::session::SharedSecret::between`].
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    /// Signs arbitrary bytes (receipts and other domain-tagged messages).
    pub fn sign(&self, msg: &[u8]) -> String {
        STANDARD.encode(self.0.sign(msg).to_bytes())
    }
}

/// Header values of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub node: String,
    pub timestamp: String,
    pub signature: String,
}

/// Parses a base64 public key.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, AuthError> {
    let shown = || b64.chars().take(60).collect::<String>();
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|_| AuthError::BadPublicKey(shown()))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| AuthError::BadPublicKey(shown()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| AuthError::BadPublicKey(shown()))
}

/// Verifies a base64 signature over `msg` (strict: rejects malleable and small-order forms).
pub fn verify(public: &VerifyingKey, signature_b64: &str, msg: &[u8]) -> Result<(), AuthError> {
    let bytes = STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| AuthError::BadSignatureEncoding)?;
    let arr: [u8; 64] = bytes
        .try_into()
        .map_err(|_| AuthError::BadSignatureEncoding)?;
    public
        .verify_strict(msg, &Signature::from_bytes(&arr))
        .map_err(|_| AuthError::BadSignature)
}

/// `POST /api/agent/enroll`. The request itself is signed with the key being enrolled, which
/// proves the node holds it. Unknown members are ignored, as in every agent request body
/// (an agent newer than the Command Center may send more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub node_id: Uuid,
    /// Base64 Ed25519 public key.
    pub public_key: String,
    pub hostname: String,
    pub os_profile: String,
    /// One of the Command Center's enrollment tokens.
    pub token: String,
    /// Random, so two enrollments within one second are not byte-identical (which the replay
    /// guard would refuse as a replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl EnrollRequest {
    /// The same bounds as a heartbeat's hostname and profile.
    pub fn validate(&self) -> Result<(), crate::heartbeat::HeartbeatError> {
        use crate::heartbeat::limits;
        crate::heartbeat::text("hostname", &self.hostname, limits::HOSTNAME_MAX, true)?;
        crate::heartbeat::text("os_profile", &self.os_profile, limits::PROFILE_MAX, true)
    }
}

/// Reply to a successful enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub enrolled: bool,
    pub node_id: Uuid,
    pub enrolled_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_keys_are_those_of_the_published_seeds() {
        for seed in [[7u8; 32], [3u8; 32]] {
            assert!(is_published(&NodeKey::from_seed(seed).public_base64()));
        }
        assert!(!is_published(&NodeKey::from_seed([1; 32]).public_base64()));
    }

    /// The worked example of docs/PROTOCOL.md: if this changes, the document must too.
    #[test]
    fn protocol_worked_example() {
        let key = NodeKey::from_seed([7u8; 32]);
        let node = Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap();
        let body = br#"{"hello":"world"}"#;
        let msg = request_message("POST", "/api/agent/heartbeat", &node, 1_764_410_400, body);
        assert_eq!(
            String::from_utf8(msg.clone()).unwrap(),
            "vaultmesh-request-v1\nPOST\n/api/agent/heartbeat\n550e8400-e29b-41d4-a716-446655440000\n1764410400\n93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588"
        );
        let h = key.sign_request("POST", "/api/agent/heartbeat", &node, 1_764_410_400, body);
        let public = parse_public_key(&key.public_base64()).unwrap();
        verify(&public, &h.signature, &msg).unwrap();
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
                .unwrap();
        for needle in [key.to_base64(), key.public_base64(), h.signature.clone()] {
            assert!(doc.contains(&needle), "docs/PROTOCOL.md lacks {needle}");
        }
    }

    #[test]
    fn tampering_any_part_breaks_the_signature() {
        let key = NodeKey::from_seed([1u8; 32]);
        let public = parse_public_key(&key.public_base64()).unwrap();
        let node = Uuid::from_u128(1);
        let h = key.sign_request("POST", "/p", &node, 100, b"body");
        for msg in [
            request_message("GET", "/p", &node, 100, b"body"),
            request_message("POST", "/q", &node, 100, b"body"),
            request_message("POST", "/p", &Uuid::from_u128(2), 100, b"body"),
            request_message("POST", "/p", &node, 101, b"body"),
            request_message("POST", "/p", &node, 100, b"bodY"),
        ] {
            assert_eq!(
                verify(&public, &h.signature, &msg),
                Err(AuthError::BadSignature)
            );
        }
        assert_eq!(
            verify(&public, "!!", b""),
            Err(AuthError::BadSignatureEncoding)
        );
        let other = NodeKey::from_seed([2u8; 32]);
        let forged = other.sign_request("POST", "/p", &node, 100, b"body");
        assert_eq!(
            verify(
                &public,
                &forged.signature,
                &request_message("POST", "/p", &node, 100, b"body")
            ),
            Err(AuthError::BadSignature)
        );
        assert!(NodeKey::from_base64("short").is_err());
        assert_eq!(
            NodeKey::from_base64(&key.to_base64())
                .unwrap()
                .public_base64(),
            key.public_base64()
        );
        assert!(
            !format!("{key:?}").contains(&key.to_base64()),
            "Debug never shows the secret"
        );
    }
}
