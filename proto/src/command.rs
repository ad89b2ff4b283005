//! Signed commands and signed receipts (DESIGN.md §2, `docs/PROTOCOL.md`).
//!
//! A [`Command`] is signed by the Command Center's key over
//! `"vaultmesh-command-v1\n" || JCS(command)` and travels as a [`SignedCommand`]. The agent
//! answers every command — executed, failed, rejected or timed out — with a [`CommandReceipt`]
//! signed by its node key over `"vaultmesh-receipt-v1\n" || JCS(receipt)`. Each receipt names
//! the SHA-256 of the JCS bytes of the node's previous receipt, so a node's receipts form a hash
//! chain.
//!
//! `JCS(x)` is the RFC 8785 canonical form of the JSON object **as the signer wrote it**, not of
//! this crate's re-serialization of it: [`AsSigned`] keeps the object exactly as received next to
//! its typed reading, and signatures and chain hashes are computed over the object. So every
//! valid spelling of the same receipt verifies (`+00:00` or `Z`, `.5Z`, an optional member
//! omitted or `null`), and members this version does not know are kept, logged and covered by
//! the signature — a newer agent or Command Center can add one without breaking an older peer.

use std::ops::Deref;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{self, AuthError, NodeKey};
use crate::canonical;

/// The actions a command may name: the agent's built-in actions (docs/COMMANDS.md documents
/// each with its arguments). A Command Center's policies allow only these; the agent's action
/// registry holds exactly these (test: `node-agent/tests/cli.rs::registry_of_the_binary_holds_exactly_the_built_in_actions`).
pub const ACTIONS: [&str; 5] = [
    "agent.ping",
    "checks.run",
    "scan.sovereign",
    "service.restart",
    "service.status",
];

/// The arguments each of [`ACTIONS`] takes, all strings and all required: what the console's
/// command form asks for. The agent's registrations declare the same (`{unit: string}`; test:
/// `node-agent/tests/cli.rs::registry_of_the_binary_holds_exactly_the_built_in_actions`).
pub const ACTION_ARGS: [(&str, &[&str]); 5] = [
    ("agent.ping", &[]),
    ("checks.run", &["name"]),
    ("scan.sovereign", &[]),
    ("service.restart", &["unit"]),
    ("service.status", &["unit"]),
];

/// The arguments `action` takes, if it is one of [`ACTIONS`].
pub fn action_args(action: &str) -> Option<&'static [&'static str]> {
    ACTION_ARGS
        .iter()
        .find(|(a, _)| *a == action)
        .map(|(_, args)| *args)
}

/// Prefix of every command signature's message.
pub const COMMAND_DOMAIN: &[u8] = b"vaultmesh-command-v1\n";
/// Prefix of every receipt signature's message.
pub const RECEIPT_DOMAIN: &[u8] = b"vaultmesh-receipt-v1\n";
/// Largest receipt output kept, in bytes.
pub const OUTPUT_MAX: usize = 64 * 1024;
/// Largest signed command, as JSON, a Command Center issues (its `args` and `issued_by` take
/// all but about 600 bytes of it).
pub const COMMAND_MAX: usize = 16 * 1024;
/// Most commands one long-poll reply carries; the rest come with the next poll.
pub const POLL_BATCH_MAX: usize = 32;
/// Largest long-poll reply an agent reads: a JSON array of [`POLL_BATCH_MAX`] commands of at
/// most [`COMMAND_MAX`] bytes each (513 KiB).
pub const POLL_REPLY_MAX: usize = POLL_BATCH_MAX * (COMMAND_MAX + 1) + 2;

/// A signed JSON object: its typed reading and the object exactly as the signer wrote it
/// (every member, known or not). Reads like `T` (it derefs to it) but cannot be changed: a
/// different object is a different value, made with [`AsSigned::from_object`].
///
/// Serializes as the object, so what is logged or forwarded is what was signed.
#[derive(Debug, Clone, PartialEq)]
pub struct AsSigned<T> {
    value: T,
    object: Map<String, Value>,
}

impl<T: Serialize + DeserializeOwned> AsSigned<T> {
    /// What this side is about to sign: `value` as this crate serializes it.
    pub fn new(value: T) -> AsSigned<T> {
        let object = match serde_json::to_value(&value) {
            Ok(Value::Object(object)) => object,
            _ => unreachable!("a command or receipt serializes to a JSON object"),
        };
        AsSigned { value, object }
    }

    /// Reads `object` as a `T`; members `T` does not know are kept.
    pub fn from_object(object: Map<String, Value>) -> Result<AsSigned<T>, serde_json::Error> {
        let object = Value::Object(object);
        let value = T::deserialize(&object)?;
        let Value::Object(object) = object else {
            unreachable!("built as an object just above")
        };
        Ok(AsSigned { value, object })
    }
}

impl<T> AsSigned<T> {
    /// The object as signed.
    pub fn object(&self) -> &Map<String, Value> {
        &self.object
    }

    /// Its RFC 8785 (JCS) bytes: what the signature and the chain hash cover.
    pub fn jcs(&self) -> Result<Vec<u8>, serde_json::Error> {
        canonical::to_jcs(&self.object)
    }

    /// `domain || JCS(object)`: the message a signature covers.
    fn message(&self, domain: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
        let mut msg = domain.to_vec();
        msg.extend(self.jcs()?);
        Ok(msg)
    }
}

impl<T> Deref for AsSigned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Serialize for AsSigned<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.object.serialize(s)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for AsSigned<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let object = Map::deserialize(d)?;
        AsSigned::from_object(object).map_err(serde::de::Error::custom)
    }
}

/// Signs `domain || JCS(object)`.
fn sign<T>(object: &AsSigned<T>, domain: &[u8], key: &NodeKey) -> String {
    // JCS fails only for numbers JSON cannot hold, which a `serde_json::Value` never does.
    key.sign(&object.message(domain).unwrap_or_default())
}

/// Verifies `signature` over `domain || JCS(object)` (strict Ed25519).
fn verify<T>(
    object: &AsSigned<T>,
    domain: &[u8],
    signature: &str,
    key: &VerifyingKey,
) -> Result<(), AuthError> {
    let msg = object
        .message(domain)
        .map_err(|_| AuthError::BadSignature)?;
    auth::verify(key, signature, &msg)
}

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
    /// Every member of a command object this version understands. A command carrying another
    /// is refused by the agent: a newer Command Center may add a member that limits what the
    /// command may do, and an agent that ignored it would do more than was signed for.
    pub const MEMBERS: [&'static str; 9] = [
        "command_id",
        "node_id",
        "action",
        "args",
        "nonce",
        "seq",
        "issued_at",
        "expires_at",
        "issued_by",
    ];

    /// `seq` as a number (`None` if malformed).
    pub fn seq_number(&self) -> Option<u64> {
        self.seq.parse().ok()
    }
}

/// A command with the Command Center's signature: `{"command", "signature", "key_id"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedCommand {
    /// The command object exactly as the Command Center signed it.
    pub command: AsSigned<Command>,
    /// Base64 Ed25519 signature over `"vaultmesh-command-v1\n" || JCS(command)`.
    pub signature: String,
    /// Which key signed it: [`key_id`] of the Command Center's public key.
    pub key_id: String,
}

impl SignedCommand {
    pub fn sign(command: Command, key: &NodeKey) -> SignedCommand {
        let command = AsSigned::new(command);
        SignedCommand {
            signature: sign(&command, COMMAND_DOMAIN, key),
            key_id: key_id(&key.public_base64()),
            command,
        }
    }

    /// Its length as JSON, as it travels in a long-poll reply (at most [`COMMAND_MAX`] when a
    /// Command Center issued it).
    pub fn json_len(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }

    /// The bytes the signature covers: `"vaultmesh-command-v1\n" || JCS(command)`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        self.command.message(COMMAND_DOMAIN)
    }

    /// Members of the command object as received that [`Command::MEMBERS`] does not name.
    pub fn unknown_members(&self) -> Vec<&str> {
        self.command
            .object()
            .keys()
            .map(String::as_str)
            .filter(|k| !Command::MEMBERS.contains(k))
            .collect()
    }

    /// Verifies the signature over the command as received against the pinned key (strict
    /// Ed25519).
    pub fn verify(&self, pinned: &VerifyingKey) -> Result<(), AuthError> {
        verify(&self.command, COMMAND_DOMAIN, &self.signature, pinned)
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
    /// SHA-256 (hex) of the JCS bytes of this node's previous receipt object
    /// ([`SignedReceipt::chain_hash`]); `None` (omitted or `null`) for the first.
    #[serde(default)]
    pub prev_receipt_sha256: Option<String>,
}

/// A receipt with the node's signature: `{"receipt", "signature"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The receipt object exactly as the node signed it.
    pub receipt: AsSigned<CommandReceipt>,
    /// Base64 Ed25519 signature over `"vaultmesh-receipt-v1\n" || JCS(receipt)`.
    pub signature: String,
}

impl SignedReceipt {
    pub fn sign(receipt: CommandReceipt, key: &NodeKey) -> SignedReceipt {
        let receipt = AsSigned::new(receipt);
        SignedReceipt {
            signature: sign(&receipt, RECEIPT_DOMAIN, key),
            receipt,
        }
    }

    /// The bytes the signature covers: `"vaultmesh-receipt-v1\n" || JCS(receipt)`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        self.receipt.message(RECEIPT_DOMAIN)
    }

    /// Verifies the signature over the receipt as received (strict Ed25519).
    pub fn verify(&self, node_key: &VerifyingKey) -> Result<(), AuthError> {
        verify(&self.receipt, RECEIPT_DOMAIN, &self.signature, node_key)
    }

    /// SHA-256 (lowercase hex) of the receipt object's JCS bytes: what the node's next receipt
    /// names as `prev_receipt_sha256`.
    pub fn chain_hash(&self) -> String {
        // JCS fails only for numbers JSON cannot hold, which a `serde_json::Value` never does.
        canonical::sha256_hex(&self.receipt.jcs().unwrap_or_default())
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
    use serde_json::json;

    fn command() -> Command {
        let t = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Command {
            command_id: Uuid::from_u128(1),
            node_id: Uuid::from_u128(2),
            action: "service.restart".into(),
            args: json!({"unit": "cloudflared.service"}),
            nonce: "n".into(),
            seq: "7".into(),
            issued_at: t,
            expires_at: t + chrono::Duration::minutes(5),
            issued_by: "ops".into(),
        }
    }

    /// `signed` with one member of its signed object replaced (as an attacker would).
    fn with_member<T: Serialize + DeserializeOwned>(
        signed: &AsSigned<T>,
        name: &str,
        value: Value,
    ) -> AsSigned<T> {
        let mut object = signed.object().clone();
        object.insert(name.into(), value);
        AsSigned::from_object(object).unwrap()
    }

    #[test]
    fn members_names_every_member_of_a_command() {
        let c = SignedCommand::sign(command(), &NodeKey::from_seed([7; 32]));
        let mut keys: Vec<&str> = c.command.object().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = Command::MEMBERS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert!(c.unknown_members().is_empty());
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
                .signing_bytes()
                .unwrap()
                .starts_with(b"vaultmesh-command-v1\n{\"action\":\"service.restart\"")
        );
        let mut flipped = signed.clone();
        flipped.command = with_member(&signed.command, "args", json!({"unit": "sshd.service"}));
        assert_eq!(flipped.command.args, json!({"unit": "sshd.service"}));
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

    fn receipt(t: DateTime<Utc>) -> CommandReceipt {
        CommandReceipt {
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
        }
    }

    #[test]
    fn receipts_chain_and_verify() {
        let node = NodeKey::from_seed([5u8; 32]);
        let public = auth::parse_public_key(&node.public_base64()).unwrap();
        let first = SignedReceipt::sign(receipt(Utc::now()), &node);
        let second = CommandReceipt {
            command_id: Uuid::from_u128(3),
            prev_receipt_sha256: Some(first.chain_hash()),
            ..receipt(Utc::now())
        };
        let s = SignedReceipt::sign(second, &node);
        s.verify(&public).unwrap();
        assert_eq!(
            s.receipt.prev_receipt_sha256.as_deref(),
            Some(
                canonical::sha256_hex(&canonical::to_jcs(first.receipt.object()).unwrap()).as_str()
            )
        );
        let mut tampered = s.clone();
        tampered.receipt = with_member(&s.receipt, "status", json!("failed"));
        assert!(tampered.verify(&public).is_err());
        let (out, sha, cut) = bounded_output(&"é".repeat(40_000));
        assert!(cut && out.len() <= OUTPUT_MAX && sha.len() == 64);
    }

    /// What a receipt from another implementation looks like on the wire: the same receipt in
    /// another valid spelling, signed over the JCS of *that* object.
    fn signed_by_another_agent(object: Value, key: &NodeKey) -> Value {
        let mut msg = RECEIPT_DOMAIN.to_vec();
        msg.extend(canonical::to_jcs(&object).unwrap());
        json!({"receipt": object, "signature": key.sign(&msg)})
    }

    #[test]
    fn every_valid_spelling_of_a_receipt_verifies_over_its_own_bytes_and_chains_by_them() {
        let node = NodeKey::from_seed([5u8; 32]);
        let public = auth::parse_public_key(&node.public_base64()).unwrap();
        let base = json!({
            "command_id": Uuid::from_u128(1), "node_id": Uuid::from_u128(2), "status": "ok",
            "exit_code": 0, "output": "pong", "truncated": false,
            "output_sha256": canonical::sha256_hex(b"pong"),
            "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:01Z",
        });
        let variant = |edit: &dyn Fn(&mut Map<String, Value>)| {
            let mut v = base.clone();
            edit(v.as_object_mut().unwrap());
            v
        };
        let variants = [
            variant(&|o| {
                o.insert("started_at".into(), json!("2026-11-29T10:00:00+00:00"));
            }),
            variant(&|o| {
                o.insert("finished_at".into(), json!("2026-11-29T10:00:00.5Z"));
            }),
            variant(&|o| {
                o.remove("output");
                o.remove("truncated");
                o.remove("exit_code");
            }),
            variant(&|o| {
                o.insert("reason".into(), Value::Null);
                o.insert("prev_receipt_sha256".into(), Value::Null);
            }),
            variant(&|o| {
                o.insert("runtime".into(), json!({"cgroup": "/x", "cpu_ms": 1.5}));
            }),
        ];
        for object in variants {
            let wire = signed_by_another_agent(object.clone(), &node);
            let r: SignedReceipt = serde_json::from_value(wire.clone()).unwrap();
            r.verify(&public)
                .unwrap_or_else(|e| panic!("{object}: {e}"));
            // Logged and forwarded exactly as received, unknown members included.
            assert_eq!(serde_json::to_value(&r).unwrap(), wire);
            assert_eq!(
                r.chain_hash(),
                canonical::sha256_hex(&canonical::to_jcs(&object).unwrap())
            );
            // …and an unknown member is covered by the signature.
            let changed = with_member(&r.receipt, "runtime", json!("other"));
            assert!(
                SignedReceipt {
                    receipt: changed,
                    ..r.clone()
                }
                .verify(&public)
                .is_err()
            );
        }
        // A command from a newer Command Center with a member this agent does not know.
        let cc = NodeKey::from_seed([3u8; 32]);
        let mut object = serde_json::to_value(command()).unwrap();
        object["priority"] = json!("high");
        let mut msg = COMMAND_DOMAIN.to_vec();
        msg.extend(canonical::to_jcs(&object).unwrap());
        let wire = json!({"command": object, "signature": cc.sign(&msg), "key_id": "x"});
        let c: SignedCommand = serde_json::from_value(wire).unwrap();
        c.verify(&auth::parse_public_key(&cc.public_base64()).unwrap())
            .unwrap();
        assert_eq!(c.command.action, "service.restart");
    }
}
