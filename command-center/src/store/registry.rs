//! The node registry: which key each node id is bound to, which nodes were revoked, and which
//! single-use enrollment tokens have been spent. Rebuilt from `nodes.jsonl`.
//!
//! Tokens are never stored: a token is known by the first 16 hex digits of its SHA-256.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A line of `nodes.jsonl`: `kind` is `enroll` or `revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Base64 public key (enroll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_profile: Option<String>,
    /// Which token enrolled it (its id, not the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Whether that token was single-use (so replay knows it is spent).
    #[serde(default)]
    pub single_use: bool,
}

/// A node's binding.
#[derive(Debug, Clone)]
pub struct Binding {
    pub key: VerifyingKey,
    pub public_key: String,
    pub enrolled_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct Registry {
    nodes: HashMap<Uuid, Binding>,
    spent_tokens: HashSet<String>,
}

/// What enrolling would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollCheck {
    /// New node, or a revoked one re-enrolling: write an `enroll` record.
    New,
    /// Already bound to this key: nothing to write.
    AlreadyEnrolled(DateTime<Utc>),
    /// Bound to another key and not revoked.
    Conflict,
}

impl Registry {
    pub fn binding(&self, node_id: &Uuid) -> Option<&Binding> {
        self.nodes.get(node_id)
    }

    pub fn token_spent(&self, token_id: &str) -> bool {
        self.spent_tokens.contains(token_id)
    }

    pub fn check_enroll(&self, node_id: &Uuid, public_key: &str) -> EnrollCheck {
        match self.nodes.get(node_id) {
            None => EnrollCheck::New,
            Some(b) if b.revoked_at.is_some() => EnrollCheck::New,
            Some(b) if b.public_key == public_key => EnrollCheck::AlreadyEnrolled(b.enrolled_at),
            Some(_) => EnrollCheck::Conflict,
        }
    }

    /// Applies a stored record (live or replayed). Returns false for a record that cannot apply.
    pub fn apply(&mut self, kind: &str, ts: DateTime<Utc>, node_id: Uuid, r: &NodeRecord) -> bool {
        match kind {
            "enroll" => {
                let Some(pk) = &r.public_key else {
                    return false;
                };
                let Ok(key) = vaultmesh_proto::auth::parse_public_key(pk) else {
                    return false;
                };
                if r.single_use
                    && let Some(t) = &r.token_id
                {
                    self.spent_tokens.insert(t.clone());
                }
                self.nodes.insert(
                    node_id,
                    Binding {
                        key,
                        public_key: pk.clone(),
                        enrolled_at: ts,
                        revoked_at: None,
                    },
                );
                true
            }
            "revoke" => match self.nodes.get_mut(&node_id) {
                Some(b) => {
                    b.revoked_at = Some(ts);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}
