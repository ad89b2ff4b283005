//! Enrollment tokens minted at runtime (`POST /api/enroll-tokens`): what `nodes.jsonl` records of
//! them, and their state as the registry keeps it.
//!
//! A token is stored only as the SHA-256 of its secret: the secret is shown once, to the admin
//! who minted it, and no log line, record or listing holds it. Its id is the first 16 hex digits
//! of that hash, as for a configured token (`vaultmesh_engines::auth::token_id`), so an `enroll`
//! record names the token that enrolled the node the same way for both.
//!
//! Two record kinds ([`super::change::kinds::TOKEN_CREATED`], `TOKEN_REVOKED`) and the `enroll`
//! records that name the token make its whole state: its uses so far are the enrollments that
//! named it. A use is taken by the `enroll` record itself, written under the registry's gate
//! after the token was checked against up-to-date memory ([`super::Store::enroll`]): two agents
//! racing for the last use cannot both get it, with one Command Center or several sharing a
//! PostgreSQL log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest token name (a comment for the admin: where the node goes, who asked).
pub const NAME_MAX: usize = 120;
/// Most uses one token may allow.
pub const USES_MAX: u32 = 1000;

/// The `record` of a `token_created` or `token_revoked` line of `nodes.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's id: the first 16 hex digits of `sha256`.
    pub id: String,
    /// Who minted or revoked it (the signed-in identity).
    pub by: String,
    /// created: the SHA-256 of the secret, hex (the secret itself is never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// created: the admin's name for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// created: when it stops being accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// created: how many enrollments it allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// API token created: its role (`viewer`, `operator`, `admin`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// API token created: its scopes, if narrower than a role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// How often an API token's use is written to the log, at most (its `last_used_at` is as fresh
/// as this after a restart; the running Command Center knows it to the request).
pub const USED_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// An API token (`POST /api/api-tokens`) as the registry knows it: never its secret. What its
/// role and scopes mean is the Command Center's business; the store keeps the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    /// Its name: the author of what it posts.
    pub name: String,
    pub role: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    /// Its last use the log knows of.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When and by whom it was revoked.
    pub revoked: Option<(DateTime<Utc>, String)>,
}

impl ApiToken {
    /// The token an `api_token_created` record makes; `None` if the record lacks a field.
    pub fn created(ts: DateTime<Utc>, r: &TokenRecord) -> Option<ApiToken> {
        Some(ApiToken {
            id: r.id.clone(),
            sha256: r.sha256.clone()?,
            name: r.name.clone()?,
            role: r.role.clone(),
            scopes: r.scopes.clone().unwrap_or_default(),
            created_at: ts,
            created_by: r.by.clone(),
            expires_at: r.expires_at?,
            last_used_at: None,
            revoked: None,
        })
    }

    /// Its state at `now`: revoked first, then expired.
    pub fn state(&self, now: DateTime<Utc>) -> TokenState {
        if self.revoked.is_some() {
            TokenState::Revoked
        } else if now >= self.expires_at {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }

    /// Its `api_token_created` record.
    pub fn record(&self) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            by: self.created_by.clone(),
            sha256: Some(self.sha256.clone()),
            name: Some(self.name.clone()),
            expires_at: Some(self.expires_at),
            role: self.role.clone(),
            scopes: (!self.scopes.is_empty()).then(|| self.scopes.clone()),
            ..TokenRecord::default()
        }
    }
}

/// A token to mint: what the admin asked for, and the hash of the secret made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    pub name: String,
    pub by: String,
    pub expires_at: DateTime<Utc>,
    pub uses: u32,
}

/// A minted token as the registry knows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedToken {
    pub id: String,
    /// SHA-256 of the secret, hex: what a presented token is compared with.
    pub sha256: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    /// Enrollments it allows.
    pub uses: u32,
    /// Enrollments it made so far.
    pub used: u32,
    /// When and by whom it was revoked.
    pub revoked: Option<(DateTime<Utc>, String)>,
}

/// Whether a minted token is accepted, and if not, why (for the Command Center's own log and
/// the admin's listing; an agent is told only that its token is not valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    Active,
    Expired,
    /// Every use it allows was taken.
    UsedUp,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::UsedUp => "used_up",
            TokenState::Revoked => "revoked",
        }
    }
}

impl MintedToken {
    /// Its state at `now`: revoked first, then used up, then expired.
    pub fn state(&self, now: DateTime<Utc>) -> TokenState {
        if self.revoked.is_some() {
            TokenState::Revoked
        } else if self.used >= self.uses {
            TokenState::UsedUp
        } else if now >= self.expires_at {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }

    /// Uses left (0 once it is no longer active for any reason but expiry).
    pub fn uses_left(&self) -> u32 {
        if self.revoked.is_some() {
            0
        } else {
            self.uses.saturating_sub(self.used)
        }
    }

    /// The token a `token_created` record makes; `None` if the record lacks a field.
    pub fn created(ts: DateTime<Utc>, r: &TokenRecord) -> Option<MintedToken> {
        Some(MintedToken {
            id: r.id.clone(),
            sha256: r.sha256.clone()?,
            name: r.name.clone().unwrap_or_default(),
            created_at: ts,
            created_by: r.by.clone(),
            expires_at: r.expires_at?,
            uses: r.uses?,
            used: 0,
            revoked: None,
        })
    }
}

impl NewToken {
    /// Its `token_created` record.
    pub fn record(&self) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            by: self.by.clone(),
            sha256: Some(self.sha256.clone()),
            name: Some(self.name.clone()),
            expires_at: Some(self.expires_at),
            uses: Some(self.uses),
            ..TokenRecord::default()
        }
    }
}

/// Which token an enrollment presents, as the server matched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUse {
    /// A token of the configuration (`--enroll-token`): its id, and whether it is single-use.
    Configured { id: String, single_use: bool },
    /// A minted token, by id: its state is checked, and a use taken, with the enrollment.
    Minted { id: String },
}

impl TokenUse {
    /// The token's id.
    pub fn id(&self) -> &str {
        match self {
            TokenUse::Configured { id, .. } | TokenUse::Minted { id } => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Duration;
    use uuid::Uuid;
    use vaultmesh_proto::auth::{EnrollRequest, NodeKey};

    use super::*;
    use crate::{JsonlStore, Store, StoreError, StoreOptions};

    fn open(dir: &std::path::Path) -> Arc<JsonlStore> {
        let bus = Arc::new(crate::bus::Bus::new(16, 16));
        Arc::new(
            JsonlStore::open(&StoreOptions::new(dir.to_path_buf()), bus)
                .unwrap()
                .0,
        )
    }

    /// A token with `uses`, expiring `ttl` from now; its id is the hash's first 16 digits.
    fn new_token(n: u8, uses: u32, ttl: Duration) -> NewToken {
        let sha256 = format!("{n:02x}").repeat(32);
        NewToken {
            id: sha256[..16].to_string(),
            sha256,
            name: format!("token {n}"),
            by: "alice@example.com".into(),
            expires_at: Utc::now() + ttl,
            uses,
        }
    }

    fn request(n: u8) -> EnrollRequest {
        EnrollRequest {
            node_id: Uuid::from_u128(u128::from(n)),
            public_key: NodeKey::from_seed([n; 32]).public_base64(),
            hostname: format!("n{n}"),
            os_profile: "Generic".into(),
            token: "unused-by-the-store-0123".into(),
            nonce: None,
        }
    }

    fn minted(t: &NewToken) -> TokenUse {
        TokenUse::Minted { id: t.id.clone() }
    }

    fn refused(r: Result<DateTime<Utc>, StoreError>) -> TokenState {
        match r {
            Err(StoreError::TokenRefused { state, .. }) => state,
            other => panic!("not refused for its token: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_token_is_stored_as_its_hash_and_counts_its_uses_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let t = new_token(1, 2, Duration::hours(1));
        let made = store.create_token(t.clone()).await.unwrap();
        assert_eq!((made.uses, made.used), (2, 0));
        assert_eq!(made.state(Utc::now()), TokenState::Active);
        assert!(matches!(
            store.create_token(t.clone()).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.token_by_hash(&t.sha256).unwrap().id, t.id);
        assert!(store.token_by_hash(&"01".repeat(31)).is_none());
        let mut other_hash = t.sha256.clone();
        other_hash.replace_range(60.., "ffff");
        assert!(
            store.token_by_hash(&other_hash).is_none(),
            "the whole hash must match, not its id"
        );
        store.enroll(&request(1), minted(&t)).await.unwrap();
        // The same node and key again: idempotent, no use taken.
        store.enroll(&request(1), minted(&t)).await.unwrap();
        assert_eq!(store.tokens()[0].used, 1);
        store.enroll(&request(2), minted(&t)).await.unwrap();
        assert_eq!(
            refused(store.enroll(&request(3), minted(&t)).await),
            TokenState::UsedUp
        );
        // The log holds the hash and the uses' records, and nothing else of the token.
        let log = std::fs::read_to_string(dir.path().join("nodes.jsonl")).unwrap();
        assert!(
            log.contains(&format!(r#""sha256":"{}""#, t.sha256)),
            "{log}"
        );
        assert_eq!(log.matches(&format!(r#""token_id":"{}""#, t.id)).count(), 2);
        drop(store);
        let store = open(dir.path());
        let again = store.tokens();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].used, again[0].uses_left()), (2, 0));
        assert_eq!(again[0].created_by, "alice@example.com");
        assert_eq!(again[0].state(Utc::now()), TokenState::UsedUp);
        assert_eq!(
            refused(store.enroll(&request(3), minted(&t)).await),
            TokenState::UsedUp
        );
    }

    #[tokio::test]
    async fn an_expired_or_revoked_token_is_refused_even_to_a_node_it_enrolled() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let old = new_token(1, 5, Duration::seconds(-1));
        store.create_token(old.clone()).await.unwrap();
        assert_eq!(
            refused(store.enroll(&request(1), minted(&old)).await),
            TokenState::Expired
        );
        let t = new_token(2, 5, Duration::hours(1));
        store.create_token(t.clone()).await.unwrap();
        store.enroll(&request(2), minted(&t)).await.unwrap();
        assert!(matches!(
            store.revoke_token("0000000000000000", "bob".into()).await,
            Err(StoreError::NotFound(_))
        ));
        let r = store.revoke_token(&t.id, "bob".into()).await.unwrap();
        let at = r.revoked.clone().unwrap();
        assert_eq!(at.1, "bob");
        assert_eq!(r.state(Utc::now()), TokenState::Revoked);
        // Revoking again changes nothing: the first revocation stands, nothing is logged.
        let lines = |d: &std::path::Path| {
            std::fs::read_to_string(d.join("nodes.jsonl"))
                .unwrap()
                .lines()
                .count()
        };
        let before = lines(dir.path());
        let again = store.revoke_token(&t.id, "carol".into()).await.unwrap();
        assert_eq!(again.revoked, Some(at));
        assert_eq!(lines(dir.path()), before);
        for n in [2, 3] {
            assert_eq!(
                refused(store.enroll(&request(n), minted(&t)).await),
                TokenState::Revoked
            );
        }
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            refused(store.enroll(&request(3), minted(&t)).await),
            TokenState::Revoked,
            "a revocation survives a restart"
        );
    }

    #[tokio::test]
    async fn racing_enrollments_take_a_single_use_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for round in 0..20u8 {
            let t = new_token(round + 1, 1, Duration::hours(1));
            store.create_token(t.clone()).await.unwrap();
            let tasks: Vec<_> = (0..4u8)
                .map(|i| {
                    let (store, t) = (Arc::clone(&store), t.clone());
                    tokio::spawn(async move {
                        store
                            .enroll(&request(100 + round * 4 + i), minted(&t))
                            .await
                    })
                })
                .collect();
            let mut ok = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(_) => ok += 1,
                    Err(e) => assert_eq!(refused(Err(e)), TokenState::UsedUp),
                }
            }
            assert_eq!(ok, 1, "round {round}: exactly one enrollment takes the use");
        }
    }

    #[test]
    fn a_record_missing_a_field_makes_no_token() {
        let t = new_token(1, 1, Duration::hours(1));
        let mut r = t.record();
        assert!(MintedToken::created(Utc::now(), &r).is_some());
        r.sha256 = None;
        assert!(MintedToken::created(Utc::now(), &r).is_none());
        // Its line goes to nodes.jsonl without a node id, and reads back as a token record.
        let change = crate::change::Change::Token {
            kind: crate::change::kinds::TOKEN_CREATED.into(),
            ts: Utc::now(),
            record: t.record(),
        };
        assert_eq!(change.log(), crate::logdir::LogName::Nodes);
        let line = change.encode().unwrap();
        let back =
            crate::change::Change::decode(crate::logdir::LogName::Nodes, line.trim_ascii_end())
                .unwrap();
        assert!(
            matches!(back, crate::change::Change::Token { record, .. } if record == t.record())
        );
    }
}
