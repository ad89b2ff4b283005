//! Enrollment tokens minted at runtime, as the admin asks for them and sees them: the request
//! (`POST /api/enroll-tokens`, the console's form, `token create`) and its checks, the secret
//! and its hash, the listing, and the line that runs an agent with a new token. The routes are
//! [`crate::enroll_tokens`]; the store keeps the tokens by their hash
//! ([`vaultmesh_store::tokens`]).
//!
//! A minted token's secret is made here (32 random bytes), shown once in the reply that mints
//! it, and kept nowhere: the store holds its SHA-256.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vaultmesh_store::tokens::{MintedToken, NAME_MAX, TokenState, USES_MAX};

/// How long a token is accepted when the request does not say.
pub const DEFAULT_EXPIRES_IN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest a token may be accepted.
pub const MAX_EXPIRES_IN: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// The shortest.
pub const MIN_EXPIRES_IN: std::time::Duration = std::time::Duration::from_secs(60);
/// What every minted token's secret starts with, so one is recognised in a config or a leak.
pub const SECRET_PREFIX: &str = "vmt_";
/// What an agent is told of any refused minted token (and of an unknown token).
pub const NOT_VALID: &str = vaultmesh_engines::auth::TOKEN_NOT_VALID;

/// Body of `POST /api/enroll-tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The admin's name for the token (where the node goes, who asked): 1-120 characters.
    pub name: String,
    /// Enrollments it allows: 1 (the default: single-use) to [`USES_MAX`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    /// How long it is accepted: a duration such as `"24h"` or `"7d"` (default 24h, at most
    /// 30d, at least 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// Why a mint request was refused (each names its field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error(
        "name: give the token a name (where the node goes, who asked), at most {NAME_MAX} characters"
    )]
    NoName,
    #[error("name: {0} characters; the limit is {NAME_MAX}")]
    LongName(usize),
    #[error(
        "name contains U+{0:04X}: a control character, or a bidirectional or invisible one, that could make it read as something else"
    )]
    DeceptiveName(u32),
    #[error("uses: {0}; a token allows 1 to {USES_MAX} enrollments")]
    Uses(u32),
    #[error("uses: {0:?} is not a whole number")]
    UsesText(String),
    #[error("expires_in: {0}")]
    ExpiresIn(String),
}

/// A checked mint request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mint {
    pub name: String,
    pub uses: u32,
    pub expires_in: std::time::Duration,
}

impl MintRequest {
    /// The request checked: a name, uses within bounds, a duration within bounds.
    pub fn check(self) -> Result<Mint, MintError> {
        let name = self.name.trim().to_string();
        if name.is_empty() {
            return Err(MintError::NoName);
        }
        let chars = name.chars().count();
        if chars > NAME_MAX {
            return Err(MintError::LongName(chars));
        }
        if let Some(c) = vaultmesh_proto::text::first_deceptive(&name, &[]) {
            return Err(MintError::DeceptiveName(u32::from(c)));
        }
        let uses = self.uses.unwrap_or(1);
        if !(1..=USES_MAX).contains(&uses) {
            return Err(MintError::Uses(uses));
        }
        let expires_in = match self.expires_in.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_EXPIRES_IN,
            Some(text) => {
                let d = humantime::parse_duration(text).map_err(|e| {
                    MintError::ExpiresIn(format!(
                        "{:?} is not a duration ({e}); write e.g. \"1h\", \"24h\" or \"7d\"",
                        text.chars().take(32).collect::<String>()
                    ))
                })?;
                if d < MIN_EXPIRES_IN || d > MAX_EXPIRES_IN {
                    return Err(MintError::ExpiresIn(format!(
                        "{text:?} is out of bounds: a token is accepted for 1m to 30d"
                    )));
                }
                d
            }
        };
        Ok(Mint {
            name,
            uses,
            expires_in,
        })
    }
}

/// A new secret: `prefix` (an enrollment token's [`SECRET_PREFIX`], an API token's
/// [`crate::api_tokens::SECRET_PREFIX`]) and 32 random bytes, base64url. `Err` if the system
/// has no randomness to give.
pub fn new_secret(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The SHA-256 of a secret, hex: all that is kept of it.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A minted token as the admin API lists it: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    /// Enrollments it allows, made, and left.
    pub uses: u32,
    pub used: u32,
    pub uses_left: u32,
    /// `active`, `expired`, `used_up` or `revoked`.
    pub state: TokenState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl TokenView {
    pub fn of(t: &MintedToken, now: DateTime<Utc>) -> TokenView {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            created_at: t.created_at,
            created_by: t.created_by.clone(),
            expires_at: t.expires_at,
            uses: t.uses,
            used: t.used,
            uses_left: t.uses_left(),
            state: t.state(now),
            revoked_at: t.revoked.as_ref().map(|r| r.0),
            revoked_by: t.revoked.as_ref().map(|r| r.1.clone()),
        }
    }
}

/// Reply of `POST /api/enroll-tokens`: the token, its secret (this once), and the line that
/// runs an agent with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Minted {
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret: shown in this reply only.
    pub secret: String,
    /// The Command Center's URL the install line names.
    pub cc_url: String,
    /// The public key agents pin for commands, when this Command Center has a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc_public_key: Option<String>,
    /// `VAULTMESH_CC_URL=… VAULTMESH_ENROLL_TOKEN=… VAULTMESH_CC_PUBKEY=… vaultmesh-node-agent run`.
    pub install: String,
}

/// The line to run on a node: the agent with this Command Center's URL, the token and the
/// pinned command key (a placeholder when there is no signing key). Every value is URL or
/// base64 text: nothing a shell would read differently.
pub fn install_line(cc_url: &str, secret: &str, cc_public_key: Option<&str>) -> String {
    let key = cc_public_key.unwrap_or("<no signing key: see keygen>");
    format!(
        "VAULTMESH_CC_URL={cc_url} VAULTMESH_ENROLL_TOKEN={secret} VAULTMESH_CC_PUBKEY={key} vaultmesh-node-agent run"
    )
}

/// The Command Center's URL as the admin reached it: `host`, the request's `Host` (which the
/// host guard let through), over `http` for a loopback name and `https` for any other (a
/// public hostname is served through Cloudflare's TLS).
pub fn cc_url(host: Option<&str>) -> String {
    let host = host
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("127.0.0.1:8088");
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    let loopback = ["localhost", "127.0.0.1", "[::1]"].contains(&name);
    format!("{}://{host}", if loopback { "http" } else { "https" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> Result<Mint, String> {
        serde_json::from_value::<MintRequest>(json)
            .map_err(|e| e.to_string())?
            .check()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_mint_request_has_defaults_and_bounds_and_names_its_field() {
        let m = req(serde_json::json!({"name": " web-03 "})).unwrap();
        assert_eq!(
            m,
            Mint {
                name: "web-03".into(),
                uses: 1,
                expires_in: DEFAULT_EXPIRES_IN
            }
        );
        let m = req(serde_json::json!({"name": "fra1", "uses": 10, "expires_in": "7d"})).unwrap();
        assert_eq!((m.uses, m.expires_in.as_secs()), (10, 7 * 86_400));
        for (body, says) in [
            (
                serde_json::json!({"name": ""}),
                "name: give the token a name",
            ),
            (
                serde_json::json!({"name": "x".repeat(121)}),
                "name: 121 characters",
            ),
            (
                serde_json::json!({"name": "a\u{202e}b"}),
                "name contains U+202E",
            ),
            (serde_json::json!({"name": "x", "uses": 0}), "uses: 0;"),
            (
                serde_json::json!({"name": "x", "uses": 1001}),
                "uses: 1001;",
            ),
            (
                serde_json::json!({"name": "x", "expires_in": "soon"}),
                "expires_in: \"soon\" is not a duration",
            ),
            (
                serde_json::json!({"name": "x", "expires_in": "31d"}),
                "expires_in: \"31d\" is out of bounds",
            ),
            (
                serde_json::json!({"name": "x", "expires_in": "10s"}),
                "out of bounds",
            ),
            (
                serde_json::json!({"name": "x", "use": 2}),
                "unknown field `use`, expected one of `name`, `uses`, `expires_in`",
            ),
            (serde_json::json!({"uses": 2}), "missing field `name`"),
        ] {
            let e = req(body.clone()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn a_secret_is_random_prefixed_and_kept_only_as_its_hash() {
        let (a, b) = (
            new_secret(SECRET_PREFIX).unwrap(),
            new_secret(SECRET_PREFIX).unwrap(),
        );
        assert_ne!(a, b);
        assert!(
            a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 43,
            "{a}"
        );
        assert!(a.bytes().all(|c| c.is_ascii_graphic()), "{a}");
        let h = hash(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a[SECRET_PREFIX.len()..]));
        // The id a configured token with this secret would have: one id scheme for both.
        assert_eq!(&h[..16], vaultmesh_engines::auth::token_id(&a));
    }

    #[test]
    fn the_install_line_names_the_url_the_admin_used() {
        let url = |host: &str| cc_url(Some(host));
        assert_eq!(url("127.0.0.1:8088"), "http://127.0.0.1:8088");
        assert_eq!(url("localhost:9000"), "http://localhost:9000");
        assert_eq!(url("[::1]:8088"), "http://[::1]:8088");
        assert_eq!(url("cc.example.com"), "https://cc.example.com");
        assert_eq!(cc_url(None), "http://127.0.0.1:8088");
        assert_eq!(
            install_line("https://cc.example.com", "vmt_s", Some("KEY=")),
            "VAULTMESH_CC_URL=https://cc.example.com VAULTMESH_ENROLL_TOKEN=vmt_s VAULTMESH_CC_PUBKEY=KEY= vaultmesh-node-agent run"
        );
    }
}
