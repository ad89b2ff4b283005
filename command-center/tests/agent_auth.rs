//! Agent identity against the real server and the real agent: enrollment with tokens, signed
//! requests, and every way an unenrolled, impostor, stale or replayed request is refused.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::{CommandCenter, NodeAgent, Reply, TEST_TOKEN, heartbeat_json, text};

const HB: &str = "/api/agent/heartbeat";

fn node(n: u128) -> TestNode {
    TestNode::new(Uuid::from_u128(
        0x5eed_0000_0000_4000_8000_0000_0000_0000 | n,
    ))
}

fn send(cc: &CommandCenter, n: &TestNode, body: &serde_json::Value) -> Reply {
    Reply::from(
        n.signed(
            &cc.url,
            "POST",
            HB,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        )
        .send()
        .unwrap(),
    )
}

fn hb_for(n: &TestNode, seq: u64) -> serde_json::Value {
    heartbeat_json(&n.id.to_string(), "h", seq)
}

fn error_of(r: &Reply) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn unsigned_unenrolled_and_impostor_heartbeats_are_401() {
    let cc = CommandCenter::start();
    let a = node(1);
    // No signature at all.
    let r = cc.unsigned_request(
        "POST",
        HB,
        Some("application/json"),
        serde_json::to_vec(&hb_for(&a, 1)).unwrap(),
    );
    assert_eq!(r.status, 401);
    assert!(
        error_of(&r).contains("missing x-vaultmesh-node header"),
        "{}",
        r.body
    );
    // Signed, but never enrolled.
    let r = send(&cc, &a, &hb_for(&a, 1));
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("is not enrolled"), "{}", r.body);
    // Enrolled; then an impostor signs as that node with another key.
    assert_eq!(a.enroll_with(&cc.url, TEST_TOKEN), 200);
    assert_eq!(send(&cc, &a, &hb_for(&a, 1)).status, 200);
    let impostor = TestNode::with_key(a.id, 9);
    let r = send(&cc, &impostor, &hb_for(&a, 2));
    assert_eq!(r.status, 401);
    assert!(
        error_of(&r).contains("signature does not verify"),
        "{}",
        r.body
    );
    // A node signing a heartbeat for another node.
    let b = node(2);
    b.enroll(&cc.url);
    let r = send(&cc, &b, &hb_for(&a, 3));
    assert_eq!(r.status, 403);
    assert!(error_of(&r).contains("signed by node"), "{}", r.body);
    assert_eq!(
        cc.get_json("/api/nodes").as_array().unwrap().len(),
        1,
        "nothing from the refused requests was stored"
    );
}

#[test]
fn stale_tampered_and_replayed_requests_are_401() {
    let cc = CommandCenter::start();
    let a = node(3);
    a.enroll(&cc.url);
    let body = serde_json::to_vec(&hb_for(&a, 1)).unwrap();
    let now = chrono::Utc::now().timestamp();
    let stale = a
        .signed_at(
            &cc.url,
            "POST",
            HB,
            Some("application/json"),
            body.clone(),
            now - 3600,
        )
        .send()
        .unwrap();
    assert_eq!(stale.status().as_u16(), 401);
    assert!(
        stale
            .text()
            .unwrap()
            .contains("3600 s away from the Command Center's clock")
    );

    // Signed for one body, sent with another.
    let h = a.key.sign_request("POST", HB, &a.id, now, &body);
    let other = serde_json::to_vec(&hb_for(&a, 2)).unwrap();
    let r = vaultmesh_testkit::http()
        .post(format!("{}{HB}", cc.url))
        .header("content-type", "application/json")
        .header("x-vaultmesh-node", &h.node)
        .header("x-vaultmesh-timestamp", &h.timestamp)
        .header("x-vaultmesh-signature", &h.signature)
        .body(other)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // The genuine request once: accepted. The same bytes again: a replay.
    let genuine = || {
        vaultmesh_testkit::http()
            .post(format!("{}{HB}", cc.url))
            .header("content-type", "application/json")
            .header("x-vaultmesh-node", &h.node)
            .header("x-vaultmesh-timestamp", &h.timestamp)
            .header("x-vaultmesh-signature", &h.signature)
            .body(body.clone())
            .send()
            .unwrap()
    };
    assert_eq!(genuine().status().as_u16(), 200);
    let again = genuine();
    assert_eq!(again.status().as_u16(), 401);
    assert!(again.text().unwrap().contains("replayed request"));
}

#[test]
fn enrollment_tokens_keys_and_revocation() {
    let mut cc = CommandCenter::start_with(&[
        "--enroll-token",
        "fleet-token-0123456789",
        "--enroll-token",
        "one-shot-token-0123456789,single-use",
        "--enroll-token",
        "old-token-0123456789,expires=2020-01-01T00:00:00Z",
    ]);
    let (a, b, c) = (node(10), node(11), node(12));
    assert_eq!(a.enroll_with(&cc.url, "wrong-token-0123456789"), 401);
    assert_eq!(
        a.enroll_with(&cc.url, "old-token-0123456789"),
        401,
        "expired"
    );
    assert_eq!(a.enroll_with(&cc.url, "one-shot-token-0123456789"), 200);
    assert_eq!(
        b.enroll_with(&cc.url, "one-shot-token-0123456789"),
        401,
        "single-use, already used"
    );
    assert_eq!(b.enroll_with(&cc.url, "fleet-token-0123456789"), 200);
    assert_eq!(
        a.enroll_with(&cc.url, "fleet-token-0123456789"),
        200,
        "same key again: idempotent"
    );
    let rekeyed = TestNode::with_key(a.id, 1);
    assert_eq!(
        rekeyed.enroll_with(&cc.url, "fleet-token-0123456789"),
        409,
        "another key for an enrolled node"
    );

    // Everything survives a restart: bindings and the spent single-use token.
    cc.restart();
    assert_eq!(send(&cc, &a, &hb_for(&a, 1)).status, 200);
    assert_eq!(c.enroll_with(&cc.url, "one-shot-token-0123456789"), 401);

    // Revocation: the old key stops working; the node may enroll a new key.
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{}/revoke", a.id), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&cc, &a, &hb_for(&a, 2));
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("was revoked"), "{}", r.body);
    assert_eq!(rekeyed.enroll_with(&cc.url, "fleet-token-0123456789"), 200);
    assert_eq!(send(&cc, &rekeyed, &hb_for(&a, 3)).status, 200);
    assert_eq!(
        cc.unsigned_request(
            "POST",
            &format!("/api/nodes/{}/revoke", node(99).id),
            None,
            ""
        )
        .status,
        404
    );
}

#[test]
fn the_real_agent_enrolls_itself_once_and_needs_a_token_to_start() {
    let cc = CommandCenter::start();
    let agent = NodeAgent::new(&cc.url);
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    let key = std::fs::read_to_string(agent.state_dir().join("node.key")).unwrap();
    assert_eq!(key.trim().len(), 44, "base64 of a 32-byte seed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(agent.state_dir().join("node.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // A second run does not enroll again (one enrollment line in the registry).
    assert!(agent.run(&["run", "--once"]).status.success());
    let registry = std::fs::read_to_string(cc.log_dir().join("nodes.jsonl")).unwrap();
    assert_eq!(registry.lines().count(), 1, "{registry}");
    assert!(
        !registry.contains(TEST_TOKEN),
        "the token itself is never stored"
    );

    // A fresh node without a token cannot start reporting.
    let fresh = NodeAgent::new(&cc.url).env("VAULTMESH_ENROLL_TOKEN", "");
    let out = fresh.run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not enrolled with the Command Center: set VAULTMESH_ENROLL_TOKEN"),
        "{}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains(TEST_TOKEN));
}

#[test]
fn a_registry_wiped_by_an_admin_is_healed_by_the_agent_re_enrolling() {
    let cc = CommandCenter::start();
    let agent = NodeAgent::new(&cc.url);
    assert!(agent.run(&["run", "--once"]).status.success());
    let id = std::fs::read_to_string(agent.state_dir().join("node_id"))
        .unwrap()
        .trim()
        .to_string();
    // The admin revokes the node; the agent (same key, token configured) enrolls again.
    assert_eq!(
        cc.unsigned_request("POST", &format!("/api/nodes/{id}/revoke"), None, "")
            .status,
        200
    );
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        cc.get_json(&format!("/api/nodes/{id}"))["summary"]["heartbeats"],
        2
    );
}
