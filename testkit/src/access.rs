//! Cloudflare Access, at the edge of the machine: locally minted RS256 tokens and the team's
//! certs (JWKS) for them. The two RSA keys in `testkit/fixtures/access/` are test-only keys.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::Value;

use crate::cloudflared::{FakeCloudflared, ReadyReply};

/// The team domain tests configure.
pub const TEAM: &str = "vaultmesh-test.cloudflareaccess.com";
/// The application AUD tag tests configure.
pub const AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

fn pem(kid: &str) -> &'static [u8] {
    match kid {
        "k1" => include_bytes!("../fixtures/access/k1.pem"),
        _ => include_bytes!("../fixtures/access/k2.pem"),
    }
}

fn jwk(kid: &str) -> Value {
    let text = match kid {
        "k1" => include_str!("../fixtures/access/k1.jwk.json"),
        _ => include_str!("../fixtures/access/k2.jwk.json"),
    };
    serde_json::from_str(text).expect("fixture JWK")
}

/// An RS256 token signed by key `kid` with `claims`.
pub fn mint(kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_rsa_pem(pem(kid)).expect("fixture key");
    encode(&header, claims, &key).expect("mint")
}

/// Claims of a valid user token for `email`, expiring in an hour.
pub fn user_claims(email: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "aud": [AUD], "email": email, "exp": now + 3600, "iat": now, "nbf": now - 5,
        "iss": format!("https://{TEAM}"), "sub": "7335d417-61da-459d-899c-0a01c76a2f94",
        "type": "app",
    })
}

/// The team's certs as Access serves them, with the public keys `kids`.
pub fn jwks(kids: &[&str]) -> String {
    let keys: Vec<Value> = kids.iter().map(|k| jwk(k)).collect();
    serde_json::json!({"keys": keys, "public_certs": []}).to_string()
}

/// The team's certs endpoint, serving the public keys `kids` (settable). It is the metrics
/// fake's plain HTTP server answering JSON: point `--access-jwks-url` at [`Certs::url`].
#[derive(Debug)]
pub struct Certs(FakeCloudflared);

impl Certs {
    pub fn start(kids: &[&str]) -> Certs {
        Certs(FakeCloudflared::start(Self::reply(
            kids,
            std::time::Duration::ZERO,
        )))
    }

    fn reply(kids: &[&str], delay: std::time::Duration) -> ReadyReply {
        ReadyReply {
            status: 200,
            body: jwks(kids),
            delay,
        }
    }

    /// Rotates to `kids`.
    pub fn set(&self, kids: &[&str]) {
        self.set_slow(kids, std::time::Duration::ZERO);
    }

    /// Rotates to `kids`, answering each fetch only after `delay` (a slow certs endpoint).
    pub fn set_slow(&self, kids: &[&str], delay: std::time::Duration) {
        self.0.set(Self::reply(kids, delay));
    }

    pub fn url(&self) -> String {
        format!("{}/ready", self.0.url())
    }

    /// A Command Center behind Access ([`TEAM`], [`AUD`]) checking tokens against these
    /// certs, with `extra` flags.
    pub fn command_center(&self, extra: &[&str]) -> crate::CommandCenter {
        let url = self.url();
        let mut args = vec![
            "--access-team-domain",
            TEAM,
            "--access-aud",
            AUD,
            "--access-jwks-url",
            &url,
        ];
        args.extend_from_slice(extra);
        crate::CommandCenter::start_with(&args)
    }
}
