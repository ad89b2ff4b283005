//! Enrollment tokens minted at runtime, against the real Command Center over loopback HTTP:
//! the real agent enrolls with the install line of a token minted a moment before (no restart),
//! racing agents share a token's uses exactly, every refused token gets the same 401, revocation
//! is at once, tokens survive a restart, the secret is stored nowhere, and the API refuses bad
//! requests and unauthenticated admins.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::{Arc, Barrier};

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::{CommandCenter, NodeAgent, Reply, TEST_TOKEN, commanding_center, text};

const TOKENS: &str = "/api/enroll-tokens";

fn node(n: u128) -> TestNode {
    TestNode::new(Uuid::from_u128(
        0x70c0_0000_0000_4000_8000_0000_0000_0000 | n,
    ))
}

/// `POST /api/enroll-tokens` with `body`: the reply, asserted 201.
fn mint(cc: &CommandCenter, body: Value) -> Value {
    let r = cc.post_json(TOKENS, &body);
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

fn listed(cc: &CommandCenter, id: &str) -> Value {
    let all = cc.get_json(TOKENS);
    all.as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("token {id} is not listed: {all}"))
}

/// Every file under `dir`, read as bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
        }
    }
    out
}

/// The value of `VAR=` in an install line.
fn var<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} is not in {line}"))
}

#[test]
fn the_real_agent_enrolls_with_a_token_minted_at_runtime_and_the_secret_is_kept_nowhere() {
    let (cc, _keys, public) = commanding_center(&[]);
    let minted = mint(&cc, json!({"name": "web-03 in fra1"}));
    let secret = minted["secret"].as_str().unwrap().to_string();
    let id = minted["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("vmt_"), "{minted}");
    assert_eq!(minted["uses"], 1, "single-use by default: {minted}");
    assert_eq!(minted["state"], "active");
    assert_eq!(minted["created_by"], "anonymous", "loopback without auth");
    assert_eq!(minted["cc_public_key"], public.as_str());
    let install = minted["install"].as_str().unwrap();
    assert_eq!(var(install, "VAULTMESH_CC_URL"), cc.url);
    assert_eq!(var(install, "VAULTMESH_ENROLL_TOKEN"), secret);
    assert_eq!(var(install, "VAULTMESH_CC_PUBKEY"), public);
    assert!(install.ends_with("vaultmesh-node-agent run"), "{install}");
    let expires = chrono::DateTime::parse_from_rfc3339(minted["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let ttl = expires - chrono::Utc::now();
    assert!(
        ttl > chrono::Duration::hours(23) && ttl <= chrono::Duration::hours(24),
        "24h by default: {ttl}"
    );

    // The real agent, configured with the install line's three values, enrolls — the server was
    // not restarted since the token was minted.
    let agent = NodeAgent::new(&cc.url)
        .env("VAULTMESH_CC_URL", var(install, "VAULTMESH_CC_URL"))
        .env(
            "VAULTMESH_ENROLL_TOKEN",
            var(install, "VAULTMESH_ENROLL_TOKEN"),
        )
        .env("VAULTMESH_CC_PUBKEY", var(install, "VAULTMESH_CC_PUBKEY"));
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    let (node_id, _) = agent.identity();
    let nodes = cc.get_json("/api/nodes");
    assert_eq!(nodes[0]["node_id"], node_id.to_string(), "{nodes}");

    let t = listed(&cc, &id);
    assert_eq!(
        (t["used"].as_u64(), t["uses_left"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(t["state"], "used_up");
    let listing = cc.get(TOKENS).body;
    assert!(!listing.contains(&secret), "{listing}");
    assert!(
        !listing.contains("sha256") && !listing.contains("secret"),
        "{listing}"
    );
    // Used up: another node is refused.
    assert_eq!(node(1).enroll_with(&cc.url, &secret), 401);
    // The configuration's token still enrolls, as before.
    assert_eq!(node(2).enroll_with(&cc.url, TEST_TOKEN), 200);

    // No file of the log directory, and no line the server logged, holds the secret.
    let body = &secret[4..];
    for (path, bytes) in files(&cc.log_dir()) {
        assert!(
            !bytes.windows(body.len()).any(|w| w == body.as_bytes()),
            "{} holds the secret",
            path.display()
        );
    }
    assert!(!cc.stderr().contains(body), "{}", cc.stderr());
}

#[test]
fn racing_agents_take_a_tokens_uses_exactly_once_each() {
    let cc = CommandCenter::start();
    for (uses, racers) in [(1u64, 8u128), (3, 10)] {
        let minted = mint(&cc, json!({"name": "race", "uses": uses}));
        let secret = minted["secret"].as_str().unwrap().to_string();
        let start = Arc::new(Barrier::new(racers as usize));
        let handles: Vec<_> = (0..racers)
            .map(|i| {
                let (url, secret, start) = (cc.url.clone(), secret.clone(), Arc::clone(&start));
                let n = node(100 * uses as u128 + i);
                std::thread::spawn(move || {
                    start.wait();
                    n.enroll_reply(&url, &secret)
                })
            })
            .collect();
        let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = replies.iter().filter(|r| r.status == 200).count() as u64;
        assert_eq!(
            ok,
            uses,
            "{:?}",
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        for r in replies.iter().filter(|r| r.status != 200) {
            assert_eq!(r.status, 401, "{}", r.body);
            assert_eq!(r.json()["error"], "enrollment token is not valid");
        }
        let t = listed(&cc, minted["id"].as_str().unwrap());
        assert_eq!(t["used"].as_u64(), Some(uses), "{t}");
    }
    let nodes = cc.get_json("/api/nodes");
    assert!(
        nodes.as_array().unwrap().is_empty(),
        "enrolled, not yet reporting"
    );
    let log = std::fs::read_to_string(cc.log_dir().join("nodes.jsonl")).unwrap();
    assert_eq!(log.matches(r#""kind":"enroll""#).count(), 4, "{log}");
}

#[test]
fn expired_used_up_revoked_and_unknown_tokens_get_the_same_401_and_the_log_says_why() {
    // A token whose expiry passed, as nodes.jsonl records one, in the log before the start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let expired_secret = "vmt_expired-secret-0123456789abcdefghijklmno";
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(expired_secret.as_bytes()))
    };
    let line = json!({
        "kind": "token_created", "ts": "2026-11-01T10:00:00Z",
        "record": {"id": &sha[..16], "by": "alice", "sha256": sha, "name": "old",
                   "expires_at": "2026-11-02T10:00:00Z", "uses": 5}
    });
    std::fs::write(dir.path().join("logs/nodes.jsonl"), format!("{line}\n")).unwrap();
    let mut cc = CommandCenter::start_in(dir, &[], &[]);
    assert_eq!(listed(&cc, &sha[..16])["state"], "expired");

    let used = mint(&cc, json!({"name": "used"}));
    let used_secret = used["secret"].as_str().unwrap();
    assert_eq!(node(1).enroll_with(&cc.url, used_secret), 200);
    assert_eq!(
        node(1).enroll_with(&cc.url, used_secret),
        200,
        "the same node and key again: idempotent, even with the token used up"
    );
    let revoked = mint(&cc, json!({"name": "revoked", "uses": 5}));
    let revoked_id = revoked["id"].as_str().unwrap();
    let r = cc.request("DELETE", &format!("{TOKENS}/{revoked_id}"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "revoked");
    assert_eq!(r.json()["revoked_by"], "anonymous");

    let unknown = node(2).enroll_reply(&cc.url, "vmt_nobody-minted-this-0123456789");
    assert_eq!(unknown.status, 401);
    for (secret, why) in [
        (expired_secret, "expired"),
        (used_secret, "used_up"),
        (revoked["secret"].as_str().unwrap(), "revoked"),
    ] {
        let r = node(3).enroll_reply(&cc.url, secret);
        assert_eq!(
            (r.status, r.json()),
            (unknown.status, unknown.json()),
            "{why}: the same answer as an unknown token"
        );
        let log = cc.wait_for_log(&[&format!("state=\"{why}\"")]);
        assert!(!log.contains(&secret[4..]), "{log}");
    }

    // Revocation is idempotent and stays; an unknown id is 404; tokens survive a restart.
    let again = cc.request("DELETE", &format!("{TOKENS}/{revoked_id}"), None, "");
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["revoked_at"], r.json()["revoked_at"]);
    let missing = cc.request("DELETE", &format!("{TOKENS}/0123456789abcdef"), None, "");
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("no enrollment token")
    );
    assert_eq!(
        cc.request("DELETE", &format!("{TOKENS}/nope"), None, "")
            .status,
        404
    );
    let fresh = mint(
        &cc,
        json!({"name": "after restart", "uses": 2, "expires_in": "2h"}),
    );
    cc.restart();
    assert_eq!(listed(&cc, revoked_id)["state"], "revoked");
    assert_eq!(listed(&cc, used["id"].as_str().unwrap())["used"], 1);
    assert_eq!(
        node(4).enroll_with(&cc.url, fresh["secret"].as_str().unwrap()),
        200,
        "a token minted before the restart enrolls after it"
    );
    assert_eq!(
        node(5).enroll_with(&cc.url, revoked["secret"].as_str().unwrap()),
        401
    );
    let all = cc.get_json(TOKENS);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["after restart", "revoked", "used", "old"],
        "newest first"
    );
}

#[test]
fn the_api_refuses_bad_requests_by_field_and_admins_without_credentials() {
    let cc = CommandCenter::start();
    for (body, status, says) in [
        (json!({"name": "x", "uses": 0}), 422, "uses: 0"),
        (
            json!({"name": "x", "expires_in": "31d"}),
            422,
            "expires_in: \"31d\" is out of bounds",
        ),
        (
            json!({"name": "x", "expires_in": "soon"}),
            422,
            "is not a duration",
        ),
        (json!({"name": " "}), 422, "name: give the token a name"),
        (
            json!({"name": "x", "expire_in": "1h"}),
            422,
            "unknown field `expire_in`",
        ),
    ] {
        let r = cc.post_json(TOKENS, &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.body
        );
    }
    let r = cc.unsigned_request("POST", TOKENS, Some("text/plain"), r#"{"name":"x"}"#);
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(
        cc.get_json(TOKENS).as_array().unwrap().is_empty(),
        "nothing minted"
    );

    // With an admin token, every token route needs it.
    let guarded = CommandCenter::start_with(&["--admin-token", "admin-token-0123456789abcdef"]);
    for (method, path) in [
        ("POST", TOKENS),
        ("GET", TOKENS),
        ("DELETE", "/api/enroll-tokens/0123456789abcdef"),
    ] {
        let r = guarded.unsigned_request(method, path, Some("application/json"), r#"{"name":"x"}"#);
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
    }
    let r = vaultmesh_testkit::http()
        .post(format!("{}{TOKENS}", guarded.url))
        .bearer_auth("admin-token-0123456789abcdef")
        .json(&json!({"name": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}
