//! The node registry: which key each node id is bound to, which nodes and keys were revoked,
//! which revoked nodes an admin re-admitted, and which single-use enrollment tokens have been
//! spent. Rebuilt from `nodes.jsonl`.
//!
//! A decommission is a revocation marked `decommission`: the same refusals, and the same way
//! back (re-admission, then enrollment, which clears it).
//!
//! Revocation sticks: a revoked node id is refused at enrollment until an admin re-admits it,
//! and a revoked key is refused for every node id — after re-admission too, unless the admin
//! allowed that node its old key (see `docs/SECURITY.md`).
//!
//! Tokens are never stored: a token is known by the first 16 hex digits of its SHA-256. Tokens
//! minted at runtime are kept here too, by their hash ([`super::tokens`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::tokens::{ApiToken, MintedToken, TokenRecord};

/// A line of `nodes.jsonl`: `kind` is `enroll`, `revoke` (a decommission is a `revoke` with
/// `decommission`) or `readmit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Who revoked or re-admitted the node (revoke, readmit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why, in the admin's words (revoke, readmit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// readmit: the node may enroll again with the key it was revoked with.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_old_key: bool,
    /// revoke: the revocation is a decommission (the node leaves the fleet's views until it
    /// enrolls again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decommission: bool,
}

impl NodeRecord {
    /// A `revoke` or `readmit` record.
    pub fn admin(by: String, reason: Option<String>, allow_old_key: bool) -> NodeRecord {
        NodeRecord {
            by: Some(by),
            reason,
            allow_old_key,
            ..NodeRecord::default()
        }
    }
}

/// A node's binding.
#[derive(Debug, Clone)]
pub struct Binding {
    pub key: VerifyingKey,
    pub public_key: String,
    pub enrolled_at: DateTime<Utc>,
    /// When and by whom it was revoked; stays set until the node enrolls again after an
    /// admin re-admits it.
    pub revoked: Option<Revocation>,
    /// Set once an admin re-admits the revoked node: it may enroll again.
    pub readmitted: Option<Readmission>,
}

/// A revocation, as `nodes.jsonl` recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: DateTime<Utc>,
    pub by: String,
    /// An admin decommissioned the node (a revocation that also retires it from the views).
    pub decommissioned: bool,
}

/// A re-admission of a revoked node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readmission {
    pub at: DateTime<Utc>,
    pub by: String,
    /// The node may come back with the key it was revoked with.
    pub allow_old_key: bool,
}

#[derive(Debug, Default)]
pub struct Registry {
    nodes: HashMap<Uuid, Binding>,
    spent_tokens: HashSet<String>,
    /// Every key revoked so far, and the node it was revoked with.
    revoked_keys: HashMap<String, (Uuid, DateTime<Utc>)>,
    /// Which node each enrolled key is bound to: one key, one node.
    key_owner: HashMap<String, Uuid>,
    /// Tokens minted at runtime, by id.
    minted: HashMap<String, MintedToken>,
    /// API tokens, by id.
    api_tokens: HashMap<String, ApiToken>,
}

/// What enrolling would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollCheck {
    /// A new node, or a re-admitted one with an acceptable key: write an `enroll` record.
    New,
    /// Already bound to this key: nothing to write.
    AlreadyEnrolled(DateTime<Utc>),
    /// Bound to another key and not revoked.
    Conflict,
    /// The key is already bound to this other node (not revoked): one key, one node.
    KeyInUse(Uuid),
    /// Refused because of a revocation; the reason names it.
    Refused(Refusal),
}

/// Why a revocation refuses an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The node is revoked and no admin has re-admitted it.
    NodeRevoked {
        node_id: Uuid,
        at: DateTime<Utc>,
        by: String,
    },
    /// The key was revoked (with this node or another) and may not come back.
    KeyRevoked { with_node: Uuid, at: DateTime<Utc> },
}

impl Refusal {
    /// The revoked node this refusal is about (for a key, the node it was revoked with).
    pub fn subject(&self) -> Uuid {
        match self {
            Refusal::NodeRevoked { node_id, .. } => *node_id,
            Refusal::KeyRevoked { with_node, .. } => *with_node,
        }
    }

    /// A short label for logs, metrics and events: `node_revoked` or `key_revoked`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NodeRevoked { .. } => "node_revoked",
            Refusal::KeyRevoked { .. } => "key_revoked",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NodeRevoked { node_id, at, by } => write!(
                f,
                "node {node_id} was revoked at {} by {by}; an admin must re-admit it \
                 (POST /api/nodes/{node_id}/readmit, or `vaultmesh-command-center node readmit`) \
                 before it can enroll again",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Refusal::KeyRevoked { with_node, at } => write!(
                f,
                "this key was revoked with node {with_node} at {} and is never accepted again; \
                 give the node a new key (`vaultmesh-node-agent rekey`), or re-admit the node \
                 with allow_old_key",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }
}

/// Why a node cannot be re-admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadmitRefusal {
    /// No such node.
    Unknown,
    /// The node is not revoked.
    NotRevoked,
}

impl Registry {
    /// The node's binding as `nodes.jsonl` recorded it (its own revocation only).
    pub fn recorded(&self, node_id: &Uuid) -> Option<&Binding> {
        self.nodes.get(node_id)
    }

    /// The node's binding, for authenticating its requests. A key revoked with *another* node counts as revoked here too: logs
    /// written before a key was limited to one node may bind it to several.
    pub fn binding(&self, node_id: &Uuid) -> Option<Binding> {
        let mut b = self.nodes.get(node_id)?.clone();
        if b.revoked.is_none()
            && let Some((with_node, at)) = self.revoked_keys.get(&b.public_key)
            && with_node != node_id
        {
            b.revoked = Some(Revocation {
                at: *at,
                by: format!("the revocation of node {with_node}, which had the same key"),
                decommissioned: false,
            });
        }
        Some(b)
    }

    pub fn token_spent(&self, token_id: &str) -> bool {
        self.spent_tokens.contains(token_id)
    }

    /// A minted token, by id.
    pub fn minted(&self, id: &str) -> Option<&MintedToken> {
        self.minted.get(id)
    }

    /// Every minted token, newest first.
    pub fn minted_tokens(&self) -> Vec<MintedToken> {
        let mut v: Vec<MintedToken> = self.minted.values().cloned().collect();
        v.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }

    /// An API token, by id.
    pub fn api_token(&self, id: &str) -> Option<&ApiToken> {
        self.api_tokens.get(id)
    }

    /// Every API token, newest first.
    pub fn api_tokens(&self) -> Vec<ApiToken> {
        let mut v: Vec<ApiToken> = self.api_tokens.values().cloned().collect();
        v.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }

    /// Applies a token record: an enrollment token's `token_created` or `token_revoked`, an
    /// API token's `api_token_created`, `api_token_revoked` or `api_token_used`. Returns false for one that cannot
    /// apply (a token created twice, or revoked before it was created).
    pub fn apply_token(&mut self, kind: &str, ts: DateTime<Utc>, r: &TokenRecord) -> bool {
        match kind {
            super::change::kinds::TOKEN_CREATED => {
                if self.minted.contains_key(&r.id) {
                    return false;
                }
                let Some(t) = MintedToken::created(ts, r) else {
                    return false;
                };
                self.minted.insert(r.id.clone(), t);
                true
            }
            super::change::kinds::TOKEN_REVOKED => match self.minted.get_mut(&r.id) {
                Some(t) => {
                    if t.revoked.is_none() {
                        t.revoked = Some((ts, r.by.clone()));
                    }
                    true
                }
                None => false,
            },
            super::change::kinds::API_TOKEN_CREATED => {
                if self.api_tokens.contains_key(&r.id) {
                    return false;
                }
                let Some(t) = ApiToken::created(ts, r) else {
                    return false;
                };
                self.api_tokens.insert(r.id.clone(), t);
                true
            }
            super::change::kinds::API_TOKEN_REVOKED => match self.api_tokens.get_mut(&r.id) {
                Some(t) => {
                    if t.revoked.is_none() {
                        t.revoked = Some((ts, r.by.clone()));
                    }
                    true
                }
                None => false,
            },
            super::change::kinds::API_TOKEN_USED => match self.api_tokens.get_mut(&r.id) {
                Some(t) => {
                    t.last_used_at = t.last_used_at.max(Some(ts));
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    pub fn check_enroll(&self, node_id: &Uuid, public_key: &str) -> EnrollCheck {
        let binding = self.nodes.get(node_id);
        if let Some(b) = binding
            && let Some(rev) = &b.revoked
        {
            let Some(readmit) = &b.readmitted else {
                return EnrollCheck::Refused(Refusal::NodeRevoked {
                    node_id: *node_id,
                    at: rev.at,
                    by: rev.by.clone(),
                });
            };
            if readmit.allow_old_key && b.public_key == public_key {
                return EnrollCheck::New;
            }
        }
        if let Some((with_node, at)) = self.revoked_keys.get(public_key) {
            return EnrollCheck::Refused(Refusal::KeyRevoked {
                with_node: *with_node,
                at: *at,
            });
        }
        if let Some(owner) = self.key_owner.get(public_key)
            && owner != node_id
            && self.nodes.get(owner).is_some_and(|b| b.revoked.is_none())
        {
            return EnrollCheck::KeyInUse(*owner);
        }
        match binding {
            None => EnrollCheck::New,
            Some(b) if b.revoked.is_some() => EnrollCheck::New,
            Some(b) if b.public_key == public_key => EnrollCheck::AlreadyEnrolled(b.enrolled_at),
            Some(_) => EnrollCheck::Conflict,
        }
    }

    /// Whether `node_id` can be re-admitted: `Err` says why not.
    pub fn check_readmit(&self, node_id: &Uuid) -> Result<(), ReadmitRefusal> {
        match self.nodes.get(node_id) {
            None => Err(ReadmitRefusal::Unknown),
            Some(b) if b.revoked.is_none() => Err(ReadmitRefusal::NotRevoked),
            Some(_) => Ok(()),
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
                if let Some(t) = &r.token_id {
                    if r.single_use {
                        self.spent_tokens.insert(t.clone());
                    }
                    // A minted token's use is the enrollment that names it.
                    if let Some(m) = self.minted.get_mut(t) {
                        m.used = m.used.saturating_add(1);
                    }
                }
                // An enrollment the Command Center accepted is the key's amnesty: logs from
                // before revocation stuck re-enrolled revoked keys, and the admin's
                // allow_old_key does too.
                self.revoked_keys.remove(pk);
                if let Some(old) = self.nodes.get(&node_id)
                    && self.key_owner.get(&old.public_key) == Some(&node_id)
                {
                    self.key_owner.remove(&old.public_key);
                }
                self.key_owner.insert(pk.clone(), node_id);
                self.nodes.insert(
                    node_id,
                    Binding {
                        key,
                        public_key: pk.clone(),
                        enrolled_at: ts,
                        revoked: None,
                        readmitted: None,
                    },
                );
                true
            }
            "revoke" => match self.nodes.get_mut(&node_id) {
                Some(b) => {
                    b.revoked = Some(Revocation {
                        at: ts,
                        by: r.by.clone().unwrap_or_else(|| "unknown".into()),
                        decommissioned: r.decommission,
                    });
                    b.readmitted = None;
                    self.revoked_keys
                        .insert(b.public_key.clone(), (node_id, ts));
                    true
                }
                None => false,
            },
            "readmit" => match self.nodes.get_mut(&node_id) {
                Some(b) if b.revoked.is_some() => {
                    b.readmitted = Some(Readmission {
                        at: ts,
                        by: r.by.clone().unwrap_or_else(|| "unknown".into()),
                        allow_old_key: r.allow_old_key,
                    });
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }
}
