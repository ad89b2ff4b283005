//! Admin authentication with the real binary: Cloudflare Access tokens (RS256, minted locally
//! against a local certs endpoint) — valid, expired, wrong aud, wrong iss, unknown kid then a
//! key rotation, `alg: none`, HS256 confusion, a tampered payload, no header — and the
//! loopback / bearer-token rules without Access. Agent routes keep their own signatures.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use vaultmesh_testkit::access::{AUD, Certs, TEAM, jwks, mint, user_claims};
use vaultmesh_testkit::{CommandCenter, cc_command, heartbeat_json, http, text};

const NODE: &str = "ac000000-0000-4000-8000-000000000001";

fn get(cc: &CommandCenter, path: &str, token: Option<&str>) -> (u16, String) {
    let mut r = http().get(format!("{}{path}", cc.url));
    if let Some(t) = token {
        r = r.header("cf-access-jwt-assertion", t);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn access_tokens_are_verified_and_name_the_author() {
    let certs = Certs::start(&["k1"]);
    let cc = certs.command_center(&[]);
    let good = mint("k1", &user_claims("alice@example.com"));
    assert_eq!(get(&cc, "/api/nodes", Some(&good)).0, 200);
    assert_eq!(get(&cc, "/console", Some(&good)).0, 200);

    // Refusals: 401 with a reason, never the token.
    let now = chrono::Utc::now().timestamp();
    let mut expired = user_claims("alice@example.com");
    expired["exp"] = json!(now - 120);
    let mut wrong_aud = user_claims("alice@example.com");
    wrong_aud["aud"] = json!(["another-app"]);
    let mut wrong_iss = user_claims("alice@example.com");
    wrong_iss["iss"] = json!("https://evil.cloudflareaccess.com");
    let hs256 = {
        // HMAC "signed" with the public key as secret: the classic algorithm confusion.
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": "k1"});
        let key = jsonwebtoken::EncodingKey::from_secret(include_bytes!(
            "../../testkit/fixtures/access/k1.jwk.json"
        ));
        jsonwebtoken::encode(
            &serde_json::from_value(header).unwrap(),
            &user_claims("mallory@example.com"),
            &key,
        )
        .unwrap()
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(user_claims("mallory@example.com").to_string())
    );
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut claims = user_claims("alice@example.com");
        claims["email"] = json!("mallory@example.com");
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        parts.join(".")
    };
    for (what, token, reason) in [
        ("no header", None, "no Cf-Access-Jwt-Assertion"),
        ("expired", Some(mint("k1", &expired)), "expired"),
        (
            "wrong aud",
            Some(mint("k1", &wrong_aud)),
            "another application",
        ),
        ("wrong iss", Some(mint("k1", &wrong_iss)), "another team"),
        (
            "unknown kid",
            Some(mint("k2", &user_claims("bob@example.com"))),
            "not one of the team's keys",
        ),
        ("HS256", Some(hs256), "RS256 only"),
        ("alg none", Some(none), "malformed"),
        (
            "tampered payload",
            Some(tampered.clone()),
            "signature does not verify",
        ),
        ("garbage", Some("not.a.jwt".to_string()), "malformed"),
    ] {
        let (status, body) = get(&cc, "/api/nodes", token.as_deref());
        assert_eq!(status, 401, "{what}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(reason), "{what}: {e}");
        if let Some(t) = &token {
            assert!(
                !e.contains(t.as_str()),
                "{what}: the reason echoes the token"
            );
        }
    }
    // Every admin surface is behind it; agents, health and assets are not.
    for path in [
        "/",
        "/console/nodes",
        "/events",
        "/api/events",
        "/api/ledger/root",
    ] {
        assert_eq!(get(&cc, path, None).0, 401, "{path}");
    }
    assert_eq!(get(&cc, "/healthz", None).0, 200);
    assert_eq!(get(&cc, "/assets/app.css", None).0, 200);
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1))
            .status,
        200
    );

    // The identity is the author, whatever the body claims.
    let r = http()
        .post(format!("{}/api/events", cc.url))
        .header("cf-access-jwt-assertion", &good)
        .header("content-type", "application/json")
        .body(json!({"kind": "note", "node_id": NODE, "author": "someone-else", "body": {"text": "hi"}}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["author"],
        "alice@example.com"
    );
    // So is it of what the console's forms post: a silence set from the attention panel.
    let r = http()
        .post(format!("{}/console/events", cc.url))
        .header("cf-access-jwt-assertion", &good)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "kind=silence&node_id={NODE}&rule=tunnel&duration=1h"
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["author"],
        "alice@example.com"
    );

    // Key rotation: a token by the new key k2 verifies once the certs list it.
    certs.set(&["k1", "k2"]);
    std::thread::sleep(std::time::Duration::from_millis(10_500)); // the refresh rate limit
    let rotated = mint("k2", &user_claims("bob@example.com"));
    assert_eq!(get(&cc, "/api/nodes", Some(&rotated)).0, 200);
}

#[test]
fn without_access_the_admin_surface_stays_on_loopback_or_needs_the_admin_token() {
    let logs = tempfile::tempdir().unwrap();
    let out = cc_command(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--log-dir",
        logs.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("open to the network"),
        "{}",
        text(&out)
    );

    let token = "a-long-admin-token-0123456789";
    let cc = CommandCenter::start_with(&["--admin-token", token]);
    assert_eq!(get(&cc, "/api/nodes", None).0, 401);
    let with = |t: &str| {
        http()
            .get(format!("{}/api/nodes", cc.url))
            .header("authorization", format!("Bearer {t}"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with("wrong-token-wrong-token"), 401);
    assert_eq!(with(token), 200);
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1))
            .status,
        200
    );
}

#[test]
fn agent_requests_are_rate_limited_per_node_with_429() {
    let cc = CommandCenter::start_with(&["--agent-rate", "1", "--agent-burst", "5"]);
    let mut statuses = Vec::new();
    for seq in 0..8 {
        let r = cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", seq));
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..5], [200; 5], "{statuses:?}");
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let r = http()
        .get(format!("{}/api/nodes/{NODE}", cc.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "admin routes are not limited");
    let other = "ac000000-0000-4000-8000-000000000002";
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(other, "n2", 1))
            .status,
        200,
        "another node has its own allowance"
    );
    let limited = cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 99));
    assert_eq!(limited.status, 429);
    assert!(
        limited.json()["error"]
            .as_str()
            .unwrap()
            .contains("retry in")
    );
    // Nothing refused was stored.
    let d = cc.get_json(&format!("/api/nodes/{NODE}"));
    assert!(d["summary"]["heartbeats"].as_u64().unwrap() < 8);
}

#[test]
fn each_signed_in_admin_holds_a_bounded_number_of_event_streams() {
    let token = "a-long-admin-token-0123456789";
    let cc = CommandCenter::start_with(&[
        "--admin-token",
        token,
        "--sse-per-identity",
        "2",
        "--sse-keepalive",
        "200ms",
    ]);
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let open = || {
        client
            .get(format!("{}/events", cc.url))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .unwrap()
    };
    let first = open();
    let second = open();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open();
    assert_eq!(third.status().as_u16(), 429);
    assert!(third.text().unwrap().contains("open event streams"));
    // Closing one frees its slot (noticed at the next keepalive).
    drop(first);
    let again = vaultmesh_testkit::wait_for(std::time::Duration::from_secs(5), || {
        let r = open();
        (r.status().as_u16() == 200).then_some(r)
    });
    assert!(again.is_some(), "the slot came back");
    drop(second);
}

#[test]
fn access_certs_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.json");
    std::fs::write(&certs, jwks(&["k1"])).unwrap();
    let cc = CommandCenter::start_with(&[
        "--access-team-domain",
        TEAM,
        "--access-aud",
        AUD,
        "--access-certs-file",
        certs.to_str().unwrap(),
    ]);
    let good = mint("k1", &user_claims("alice@example.com"));
    assert_eq!(get(&cc, "/api/nodes", Some(&good)).0, 200);
    let other = mint("k2", &user_claims("bob@example.com"));
    assert_eq!(
        get(&cc, "/api/nodes", Some(&other)).0,
        401,
        "k2 is not in the file"
    );
}

#[test]
fn a_slow_certs_refresh_does_not_hold_up_requests_with_a_known_key() {
    let certs = Certs::start(&["k1"]);
    let cc = certs.command_center(&[]);
    let known = mint("k1", &user_claims("alice@example.com"));
    assert_eq!(get(&cc, "/api/nodes", Some(&known)).0, 200);
    // Access rotates in a new key k2, and its certs endpoint has become slow.
    let slow = Duration::from_secs(5);
    certs.set_slow(&["k1", "k2"], slow);
    std::thread::sleep(Duration::from_millis(10_500)); // the refresh rate limit
    let rotated = mint("k2", &user_claims("bob@example.com"));
    let url = cc.url.clone();
    let refreshing = std::thread::spawn(move || {
        let started = Instant::now();
        let status = http()
            .get(format!("{url}/api/nodes"))
            .header("cf-access-jwt-assertion", &rotated)
            .send()
            .unwrap()
            .status()
            .as_u16();
        (status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500)); // the k2 request is fetching the certs
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(get(&cc, "/api/nodes", Some(&known)).0, 200);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "a request with a known key waited {took:?} for the certs fetch"
        );
    }
    let (status, took) = refreshing.join().unwrap();
    assert_eq!(status, 200, "the new key verifies once fetched");
    assert!(
        took >= slow - Duration::from_millis(600),
        "{took:?}: it waited for the fetch"
    );
}

#[test]
fn without_admin_auth_requests_through_cloudflare_are_refused_and_logged() {
    let cc = CommandCenter::start();
    // Loopback use without a token works.
    assert_eq!(get(&cc, "/api/nodes", None).0, 200);
    let through = |cc: &CommandCenter, header: &str, value: &str, bearer: Option<&str>| {
        let mut r = http()
            .get(format!("{}/api/nodes", cc.url))
            .header(header, value);
        if let Some(t) = bearer {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    // What cloudflared forwards from the edge: each header alone gives it away.
    let headers = [
        ("cf-connecting-ip", "203.0.113.7"),
        ("cf-ray", "8f1a2b3c4d5e6f70-LHR"),
        ("cdn-loop", "cloudflare; loops=1"),
        ("cf-warp-tag-id", "ee14046b-a895-4b82-ab02-facc2526bb4a"),
        ("cf-visitor", r#"{"scheme":"https"}"#),
        ("cf-ipcountry", "NL"),
    ];
    for (header, value) in headers {
        let (status, body) = through(&cc, header, value, None);
        assert_eq!(status, 403, "{header}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("came through Cloudflare")
                && e.contains(header)
                && e.contains("--admin-token")
                && e.contains("--access-team-domain"),
            "{e}"
        );
    }
    // Not only reads: a revocation through the tunnel is refused too.
    let r = http()
        .post(format!("{}/api/nodes/{NODE}/revoke", cc.url))
        .header("cf-ray", "8f1a2b3c4d5e6f70-LHR")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Agents (signed) and the health check keep working through the tunnel.
    let mut req = vaultmesh_testkit::auth::TestNode::new(NODE.parse().unwrap())
        .heartbeat_request(&cc.url, &heartbeat_json(NODE, "n1", 1));
    for (h, v) in headers {
        req = req.header(h, v);
    }
    assert_eq!(req.send().unwrap().status().as_u16(), 200);
    let r = http()
        .get(format!("{}/healthz", cc.url))
        .header("cf-ray", "8f1a2b3c4d5e6f70-LHR")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Why, in the log.
    cc.wait_for_log(&[
        "reason=unauthenticated_tunnel",
        "cf_connecting_ip=203.0.113.7",
    ]);

    // With an admin token, requests through the tunnel are the normal case.
    let token = "a-long-admin-token-0123456789";
    let cc = CommandCenter::start_with(&["--admin-token", token]);
    assert_eq!(
        through(&cc, "cf-ray", "8f1a2b3c4d5e6f70-LHR", Some(token)).0,
        200
    );
}
