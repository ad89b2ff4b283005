//! Session MACs: the cheaper credential for agent requests (`docs/PROTOCOL.md`, "Session
//! MACs").
//!
//! A node that pins the Command Center's key and the Command Center that holds it share a
//! secret without a round trip: X25519 of one's Ed25519 key and the other's public key, both
//! mapped to Curve25519 (the map libsodium's `crypto_sign_ed25519_*_to_curve25519` makes; on
//! using one key pair for both, see <https://eprint.iacr.org/2021/509>). From it and a session
//! id the agent picks, HKDF-SHA256 derives a session key bound to the node and the session; a
//! request then carries an HMAC-SHA256 of the same message a signature covers, plus the
//! session id. The Command Center checks it with a few SHA-256 compressions (the key's HKDF
//! and the HMAC) instead of an Ed25519 verification, and the replay guard remembers the MAC as
//! it remembers a signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::NodeKey;

/// First line of the MAC'd message (the signed message's is `vaultmesh-request-v1`).
pub const MAC_DOMAIN: &str = "vaultmesh-request-mac-v1";
/// HKDF `info` prefix of a session key.
pub const SESSION_DOMAIN: &str = "vaultmesh-session-v1";
/// The session id header.
pub const HEADER_SESSION: &str = "x-vaultmesh-session";
/// The MAC header (instead of `X-VaultMesh-Signature`).
pub const HEADER_MAC: &str = "x-vaultmesh-mac";
/// How long after its start a session is accepted.
pub const SESSION_MAX_SECS: i64 = 86_400;
/// How often an agent starts a new session.
pub const SESSION_EVERY_SECS: i64 = 3_600;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why a session id or MAC is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(
        "session id is not KEYID.START.NONCE (16 hex digits, Unix seconds, 32 hex digits): {0:?}"
    )]
    Malformed(String),
    #[error("MAC is not 32 bytes of base64")]
    BadMacEncoding,
    #[error("MAC does not verify")]
    BadMac,
    #[error("the public key is of low order: no secret can be shared with it")]
    WeakKey,
}

/// A session id as sent in `X-VaultMesh-Session`: `KEYID.START.NONCE` — the key id of the
/// Command Center key the session is with (as in signed commands), the session's start in Unix
/// seconds, and 16 random bytes in hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId {
    pub key_id: String,
    pub start: i64,
    pub nonce: String,
}

impl SessionId {
    /// A new session with the Command Center whose public key is `cc_public` (base64),
    /// starting at `start`.
    pub fn new(cc_public: &str, start: i64, nonce: [u8; 16]) -> SessionId {
        SessionId {
            key_id: crate::command::key_id(cc_public),
            start,
            nonce: hex::encode(nonce),
        }
    }

    /// Reads a header value; refuses anything but the exact form (lower-case hex).
    pub fn parse(text: &str) -> Result<SessionId, SessionError> {
        let bad = || SessionError::Malformed(text.chars().take(80).collect());
        let mut parts = text.split('.');
        let (Some(key_id), Some(start), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        // Decimal as `Display` writes it: no sign, no leading zero, at most 12 digits.
        let digits = !start.is_empty()
            && start.len() <= 12
            && start.bytes().all(|b| b.is_ascii_digit())
            && (start == "0" || !start.starts_with('0'));
        if !hex(key_id, 16) || !hex(nonce, 32) || !digits {
            return Err(bad());
        }
        Ok(SessionId {
            key_id: key_id.to_string(),
            start: start.parse().map_err(|_| bad())?,
            nonce: nonce.to_string(),
        })
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.key_id, self.start, self.nonce)
    }
}

/// The X25519 secret a node key and the Command Center key share. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret([u8; 32]);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl SharedSecret {
    /// X25519 of `own`'s scalar and `peer`'s public key mapped to Curve25519; the same value
    /// on both sides. Refused for a low-order `peer` (the result would be known to anyone).
    pub fn between(own: &NodeKey, peer: &VerifyingKey) -> Result<SharedSecret, SessionError> {
        let shared = peer
            .to_montgomery()
            .mul_clamped(own.signing_key().to_scalar_bytes())
            .to_bytes();
        if shared == [0; 32] {
            return Err(SessionError::WeakKey);
        }
        Ok(SharedSecret(shared))
    }

    /// The key of `session` for `node_id`: HKDF-SHA256 with no salt, this secret as input
    /// key material, `info` = `vaultmesh-session-v1\n<node id>\n<session id>`, 32 bytes.
    pub fn session_key(&self, node_id: &Uuid, session: &SessionId) -> SessionKey {
        let info = format!("{SESSION_DOMAIN}\n{node_id}\n{session}");
        let mut key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, &self.0)
            .expand(info.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SessionKey(key)
    }
}

/// A session's MAC key. Never printed.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// The message a request's MAC covers: seven lines joined by `\n`, no trailing newline —
/// the signed message's six with the session id before the body hash.
pub fn mac_message(
    method: &str,
    path_and_query: &str,
    node_id: &Uuid,
    timestamp: i64,
    session: &SessionId,
    body: &[u8],
) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "{MAC_DOMAIN}\n{method}\n{path_and_query}\n{node_id}\n{timestamp}\n{session}\n{body_hash}"
    )
    .into_bytes()
}

impl SessionKey {
    fn hmac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }

    /// HMAC-SHA256 of `msg` ([`mac_message`]), base64.
    pub fn mac(&self, msg: &[u8]) -> String {
        let mut mac = self.hmac();
        mac.update(msg);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Checks `mac_b64` over `msg` in constant time.
    pub fn verify(&self, msg: &[u8], mac_b64: &str) -> Result<(), SessionError> {
        let bytes = STANDARD
            .decode(mac_b64.trim())
            .map_err(|_| SessionError::BadMacEncoding)?;
        if bytes.len() != 32 {
            return Err(SessionError::BadMacEncoding);
        }
        let mut mac = self.hmac();
        mac.update(msg);
        mac.verify_slice(&bytes).map_err(|_| SessionError::BadMac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (NodeKey, NodeKey) {
        (NodeKey::from_seed([7; 32]), NodeKey::from_seed([3; 32]))
    }

    fn public(k: &NodeKey) -> VerifyingKey {
        crate::auth::parse_public_key(&k.public_base64()).unwrap()
    }

    #[test]
    fn both_sides_derive_the_same_secret_and_only_they_do() {
        let (node, cc) = keys();
        let a = SharedSecret::between(&node, &public(&cc)).unwrap();
        let b = SharedSecret::between(&cc, &public(&node)).unwrap();
        assert_eq!(a, b);
        let other = NodeKey::from_seed([9; 32]);
        assert_ne!(SharedSecret::between(&other, &public(&cc)).unwrap(), a);
        assert_eq!(format!("{a:?}"), "SharedSecret(..)");
    }

    #[test]
    fn a_low_order_key_shares_nothing() {
        // The identity point (y = 1) is of order one: X25519 with it is all zeros.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        assert_eq!(
            SharedSecret::between(&keys().0, &weak),
            Err(SessionError::WeakKey)
        );
    }

    #[test]
    fn a_mac_is_bound_to_the_node_the_session_and_every_line() {
        let (node, cc) = keys();
        let secret = SharedSecret::between(&node, &public(&cc)).unwrap();
        let id = Uuid::from_u128(1);
        let session = SessionId::new(&cc.public_base64(), 1_764_410_400, [0x11; 16]);
        let key = secret.session_key(&id, &session);
        let msg = mac_message(
            "POST",
            "/api/agent/heartbeat",
            &id,
            1_764_410_400,
            &session,
            b"{}",
        );
        let mac = key.mac(&msg);
        assert_eq!(key.verify(&msg, &mac), Ok(()));
        // Another node, another session, another body: another key or message.
        let other_node = secret.session_key(&Uuid::from_u128(2), &session);
        assert_eq!(other_node.verify(&msg, &mac), Err(SessionError::BadMac));
        let later = SessionId::new(&cc.public_base64(), 1_764_410_401, [0x11; 16]);
        assert_eq!(
            secret.session_key(&id, &later).verify(&msg, &mac),
            Err(SessionError::BadMac)
        );
        let changed = mac_message(
            "POST",
            "/api/agent/heartbeat",
            &id,
            1_764_410_400,
            &session,
            b"{ }",
        );
        assert_eq!(key.verify(&changed, &mac), Err(SessionError::BadMac));
        assert_eq!(
            key.verify(&msg, "c2hvcnQ="),
            Err(SessionError::BadMacEncoding)
        );
    }

    #[test]
    fn session_ids_parse_only_in_their_exact_form() {
        let id = SessionId::new(&keys().1.public_base64(), 1_764_410_400, [0xab; 16]);
        assert_eq!(SessionId::parse(&id.to_string()), Ok(id.clone()));
        let text = id.to_string();
        for bad in [
            String::new(),
            text.to_uppercase(),
            format!("{text}.1"),
            text.replacen('.', "..", 1),
            text.replace("1764410400", "-1"),
            text.replace("1764410400", "9999999999999"),
            text.replace("1764410400", "01764410400"),
            format!("{}.1764410400.{}", &id.key_id[..15], id.nonce),
        ] {
            assert!(SessionId::parse(&bad).is_err(), "{bad:?} parsed");
        }
    }
}
