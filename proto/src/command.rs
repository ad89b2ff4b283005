//! Signed commands and signed receipts (DESIGN.md §2).
//!
//! A [`Command`] is signed by the Command Center's key over
//! `"vaultmesh-command-v1\n" || JCS(command)` and travels as a [`SignedCommand`]. The agent
//! answers every command — executed, failed, rejected or timed out — with a [`CommandReceipt`]
//! signed by its node key over `"vaultmesh-receipt-v1\n" || JCS(receipt)`. Each receipt names
//! the SHA-256 of the node's previous receipt, so a node's receipts form a hash chain.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{self, AuthError, NodeKey};
use crate::canonical;

/// Prefix of every command signature's message.
pub const COMMAND_DOMAIN: &[u8] = b"vaultmesh-command-v1\n";
/// Prefix of every receipt signature's message.
pub const RECEIPT_DOMAIN: &[u8] = b"vaultmesh-receipt-v1\n";
/// Largest receipt output kept, in bytes.
pub const OUTPUT_MAX: usize = 64 * 1024;

/// A command for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub command_id: Uuid,
    pub node_id: Uuid,
    /// A registered action, e.g. `service.restart`.
    pub action: String,
    /// Typed arguments (a JSON object).
    pub args: serde_json::Value,
    /// Random; with `command_id` and `seq`, makes every command unique.
    pub nonce: String,
    /// Per-node counter, strictly increasing, as a decimal string.
    pub seq: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub issued_by: String,
}

impl Command {
    /// The bytes the Command Center signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut msg = COMMAND_DOMAIN.to_vec();
        msg.extend(canonical::to_jcs(self).unwrap_or_default());
        msg
    }

    /// `seq` as a number (`None` if malformed).
    pub fn seq_number(&self) -> Option<u64> {
        self.seq.parse().ok()
    }
}

/// A command with the Command Center's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedCommand {
    pub command: Command,
    /// Base64 Ed25519 signature over [`Command::signing_bytes`].
    pub signature: String,
    /// Which key signed it: [`key_id`] of the Command Center's public key.
    pub key_id: String,
}

impl SignedCommand {
    pub fn sign(command: Command, key: &NodeKey) -> SignedCommand {
        let signature = key.sign(&command.signing_bytes());
        let key_id = key_id(&key.public_base64());
        SignedCommand {
            command,
            signature,
            key_id,
        }
    }

    /// Verifies the signature against the pinned key (strict Ed25519).
    pub fn verify(&self, pinned: &VerifyingKey) -> Result<(), AuthError> {
        auth::verify(pinned, &self.signature, &self.command.signing_bytes())
    }
}

/// A short id for a public key: the first 16 hex digits of SHA-256 of its 32 bytes.
pub fn key_id(public_b64: &str) -> String {
    let bytes = STANDARD.decode(public_b64.trim()).unwrap_or_default();
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// How a command ended on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Ok,
    Failed,
    Rejected,
    Timeout,
}

/// The node's account of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReceipt {
    pub command_id: Uuid,
    pub node_id: Uuid,
    pub status: ReceiptStatus,
    /// Why it was rejected or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Up to [`OUTPUT_MAX`] bytes of output.
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub truncated: bool,
    /// SHA-256 (hex) of the full output.
    pub output_sha256: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// SHA-256 (hex) of the JCS form of this node's previous receipt; `None` for the first.
    #[serde(default)]
    pub prev_receipt_sha256: Option<String>,
}

impl CommandReceipt {
    /// SHA-256 (hex) of this receipt's JCS form: what the next receipt chains to.
    pub fn chain_hash(&self) -> String {
        canonical::sha256_hex(&canonical::to_jcs(self).unwrap_or_default())
    }

    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut msg = RECEIPT_DOMAIN.to_vec();
        msg.extend(canonical::to_jcs(self).unwrap_or_default());
        msg
    }
}

/// A receipt with the node's signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub receipt: CommandReceipt,
    pub signature: String,
}

impl SignedReceipt {
    pub fn sign(receipt: CommandReceipt, key: &NodeKey) -> SignedReceipt {
        let signature = key.sign(&receipt.signing_bytes());
        SignedReceipt { receipt, signature }
    }

    pub fn verify(&self, node_key: &VerifyingKey) -> Result<(), AuthError> {
        auth::verify(node_key, &self.signature, &self.receipt.signing_bytes())
    }
}

/// Truncates `output` to [`OUTPUT_MAX`] bytes at a character boundary; returns it with its
/// full SHA-256 and whether it was cut.
pub fn bounded_output(output: &str) -> (String, String, bool) {
    let sha = canonical::sha256_hex(output.as_bytes());
    if output.len() <= OUTPUT_MAX {
        return (output.to_string(), sha, false);
    }
    let mut end = OUTPUT_MAX;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    (output[..end].to_string(), sha, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> Command {
        let t = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Command {
            command_id: Uuid::from_u128(1),
            node_id: Uuid::from_u128(2),
            action: "service.restart".into(),
            args: serde_json::json!({"unit": "cloudflared.service"}),
            nonce: "n".into(),
            seq: "7".into(),
            issued_at: t,
            expires_at: t + chrono::Duration::minutes(5),
            issued_by: "ops".into(),
        }
    }

    #[test]
    fn commands_verify_only_unchanged_and_with_the_pinned_key() {
        let cc = NodeKey::from_seed([3u8; 32]);
        let pinned = auth::parse_public_key(&cc.public_base64()).unwrap();
        let signed = SignedCommand::sign(command(), &cc);
        signed.verify(&pinned).unwrap();
        assert_eq!(signed.key_id, key_id(&cc.public_base64()));
        assert!(
            signed
                .command
                .signing_bytes()
                .starts_with(b"vaultmesh-command-v1\n{\"action\":\"service.restart\"")
        );
        let mut flipped = signed.clone();
        flipped.command.args = serde_json::json!({"unit": "sshd.service"});
        assert!(flipped.verify(&pinned).is_err());
        let other = SignedCommand::sign(command(), &NodeKey::from_seed([4u8; 32]));
        assert!(other.verify(&pinned).is_err());
        // A request signature can never pass as a command signature: different domain tags.
        let req = cc.sign(&crate::auth::request_message(
            "POST",
            "/",
            &Uuid::nil(),
            0,
            b"",
        ));
        assert!(
            SignedCommand {
                signature: req,
                ..signed
            }
            .verify(&pinned)
            .is_err()
        );
    }

    #[test]
    fn receipts_chain_and_verify() {
        let node = NodeKey::from_seed([5u8; 32]);
        let public = auth::parse_public_key(&node.public_base64()).unwrap();
        let t = Utc::now();
        let first = CommandReceipt {
            command_id: Uuid::from_u128(1),
            node_id: Uuid::from_u128(2),
            status: ReceiptStatus::Ok,
            reason: None,
            exit_code: Some(0),
            output: "pong".into(),
            truncated: false,
            output_sha256: canonical::sha256_hex(b"pong"),
            started_at: t,
            finished_at: t,
            prev_receipt_sha256: None,
        };
        let second = CommandReceipt {
            command_id: Uuid::from_u128(3),
            prev_receipt_sha256: Some(first.chain_hash()),
            ..first.clone()
        };
        let s = SignedReceipt::sign(second, &node);
        s.verify(&public).unwrap();
        let mut tampered = s.clone();
        tampered.receipt.status = ReceiptStatus::Failed;
        assert!(tampered.verify(&public).is_err());
        let (out, sha, cut) = bounded_output(&"é".repeat(40_000));
        assert!(cut && out.len() <= OUTPUT_MAX && sha.len() == 64);
    }
}
