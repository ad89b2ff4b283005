//! Agent identity against the real server and the real agent: enrollment with tokens, signed
//! requests, and every way an unenrolled, impostor, stale or replayed request is refused.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::{
    CommandCenter, NodeAgent, Reply, TEST_TOKEN, heartbeat_json, text, wait_for,
};

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

    // Revocation: the old key stops working at once, and revocation sticks — neither the
    // node (with any key) nor its key (as any node) may enroll until an admin re-admits it.
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{}/revoke", a.id), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "revoked");
    let r = send(&cc, &a, &hb_for(&a, 2));
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("was revoked"), "{}", r.body);
    let refused = a.enroll_reply(&cc.url, "fleet-token-0123456789");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        error_of(&refused).contains(&format!("node {} was revoked", a.id))
            && error_of(&refused).contains("readmit"),
        "{}",
        refused.body
    );
    assert_eq!(
        rekeyed.enroll_with(&cc.url, "fleet-token-0123456789"),
        403,
        "a new key for a revoked node before re-admission"
    );
    let thief = TestNode {
        id: node(13).id,
        key: a.key.clone(),
    };
    let r = thief.enroll_reply(&cc.url, "fleet-token-0123456789");
    assert_eq!(r.status, 403, "a revoked key under another node id");
    assert!(
        error_of(&r).contains("this key was revoked with node"),
        "{}",
        r.body
    );
    cc.restart();
    assert_eq!(
        a.enroll_with(&cc.url, "fleet-token-0123456789"),
        403,
        "revocation survives a restart"
    );

    // Re-admission: the node may come back, with a new key only.
    let r = cc.unsigned_request(
        "POST",
        &format!("/api/nodes/{}/readmit", a.id),
        Some("application/json"),
        r#"{"reason": "reinstalled"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "readmitted");
    let r = a.enroll_reply(&cc.url, "fleet-token-0123456789");
    assert_eq!(r.status, 403, "the revoked key stays out: {}", r.body);
    assert!(error_of(&r).contains("rekey"), "{}", r.body);
    assert_eq!(rekeyed.enroll_with(&cc.url, "fleet-token-0123456789"), 200);
    assert_eq!(send(&cc, &rekeyed, &hb_for(&a, 3)).status, 200);
    assert_eq!(send(&cc, &a, &hb_for(&a, 4)).status, 401, "old key");

    // What the admin routes refuse.
    let post = |path: String, body: &str| {
        cc.unsigned_request("POST", &path, Some("application/json"), body.to_string())
    };
    let r = post(format!("/api/nodes/{}/revoke", node(99).id), "");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(format!("/api/nodes/{}/readmit", node(99).id), "");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(format!("/api/nodes/{}/readmit", b.id), "");
    assert_eq!(r.status, 409, "not revoked: {}", r.body);
    assert!(error_of(&r).contains("is not revoked"), "{}", r.body);
    let r = post(format!("/api/nodes/{}/revoke", b.id), r#"{"resaon": "x"}"#);
    assert_eq!(r.status, 422, "a typo in the body: {}", r.body);
    assert!(
        error_of(&r).contains("unknown field `resaon`"),
        "{}",
        r.body
    );
    let r = post(
        format!("/api/nodes/{}/revoke", b.id),
        "{\"reason\": \"lost \\u202e potpal\"}",
    );
    assert_eq!(r.status, 422, "a reason that reads backwards: {}", r.body);
    assert!(error_of(&r).contains("U+202E"), "{}", r.body);
    assert_eq!(post(format!("/api/nodes/{}/revoke", b.id), "").status, 200);
    let r = post(format!("/api/nodes/{}/revoke", b.id), "");
    assert_eq!(r.status, 409, "already revoked: {}", r.body);
    // A re-admission can be withdrawn before the node comes back: revoking again sticks.
    assert_eq!(post(format!("/api/nodes/{}/readmit", b.id), "").status, 200);
    let r = post(format!("/api/nodes/{}/revoke", b.id), "");
    assert_eq!(
        r.status, 200,
        "a re-admitted node can be revoked again: {}",
        r.body
    );
    assert_eq!(r.json()["state"], "revoked");
    let b_rekeyed = TestNode::with_key(b.id, 1);
    let r = b_rekeyed.enroll_reply(&cc.url, "fleet-token-0123456789");
    assert_eq!(r.status, 403, "the re-admission was withdrawn: {}", r.body);
    assert!(error_of(&r).contains("readmit"), "{}", r.body);

    // Each revocation, re-admission and refusal is an event; refusals once per node and reason.
    let events =
        cc.get_json("/api/events?kind=node_revoked,node_readmitted,enroll_refused&order=oldest");
    let seen: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["body"]["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [
        ("node_revoked", ""),
        ("enroll_refused", "node_revoked"),
        ("enroll_refused", "key_revoked"),
        // The restart: the throttle is per process.
        ("enroll_refused", "node_revoked"),
        ("node_readmitted", ""),
        ("enroll_refused", "key_revoked"),
        ("node_revoked", ""),
        ("node_readmitted", ""),
        ("node_revoked", ""),
        ("enroll_refused", "node_revoked"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, c)| (k.to_string(), c.to_string()))
        .collect();
    assert_eq!(seen, want, "{events:#}");
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
    let port = vaultmesh_testkit::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut cc = CommandCenter::start_with(&["--listen", &listen]);
    let agent = NodeAgent::new(&cc.url);
    assert!(agent.run(&["run", "--once"]).status.success());
    let id = std::fs::read_to_string(agent.state_dir().join("node_id"))
        .unwrap()
        .trim()
        .to_string();
    // The admin loses the registry (not a revocation): the agent, with its token, enrolls again.
    cc.kill9();
    std::fs::remove_file(cc.log_dir().join("nodes.jsonl")).unwrap();
    cc.restart();
    let out = agent.run(&["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        cc.get_json(&format!("/api/nodes/{id}"))["summary"]["heartbeats"],
        2
    );
}

/// Issue 20 item 1: with the fleet's multi-use token (as DEPLOY.md sets it up), a revoked node
/// used to re-enroll its same key within a second. Now it stays out until re-admitted, comes
/// back only with a new key (`rekey`) — or by itself once the admin allows its old key.
#[test]
fn a_revoked_agent_stays_out_until_readmitted_and_rekeyed() {
    let cc = CommandCenter::start();
    let agent = NodeAgent::new(&cc.url).env("VAULTMESH_INTERVAL", "1s");
    let id = {
        let _daemon = agent.spawn(&["run"]);
        let id = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(agent.state_dir().join("node_id")).ok()
        })
        .unwrap();
        let id = id.trim().to_string();
        heartbeats_reach(&cc, &id, 1);
        id
    };
    let heartbeats = |cc: &CommandCenter| {
        cc.get_json(&format!("/api/nodes/{id}"))["summary"]["heartbeats"]
            .as_u64()
            .unwrap()
    };
    let (mut daemon, log) = agent.spawn_captured(&["run"]);
    let before = heartbeats(&cc);
    heartbeats_reach(&cc, &id, before + 1);

    let r = cc.unsigned_request(
        "POST",
        &format!("/api/nodes/{id}/revoke"),
        Some("application/json"),
        r#"{"reason": "lost laptop"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The agent tries every second; not one heartbeat gets in, and the key is not re-bound.
    let at_revoke = heartbeats(&cc);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(heartbeats(&cc), at_revoke, "a revoked node came back");
    // ...and it backs off: 1 s, 2 s, 4 s between enrollments (interval 1 s, doubling), not 8.
    let knocks = log.text().matches("Enrollment refused.").count();
    assert!(
        (2..=4).contains(&knocks),
        "{knocks} enrollments in 8 s:\n{}",
        log.text()
    );
    let enrolls = |cc: &CommandCenter| {
        std::fs::read_to_string(cc.log_dir().join("nodes.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| l.contains(r#""kind":"enroll""#))
            .count()
    };
    assert_eq!(enrolls(&cc), 1);

    // Re-admitted, the old key is still refused at the agent's next try, when its hold (4 s
    // after the third refusal) runs out...
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{id}/readmit"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let refused_again = wait_for(Duration::from_secs(15), || {
        let refusals = cc.get_json(&format!("/api/events?node_id={id}&kind=enroll_refused"));
        (refusals.as_array()?.len() >= 2).then_some(())
    });
    assert!(
        refused_again.is_some(),
        "the old key did not try again:\n{}",
        log.text()
    );
    assert_eq!(heartbeats(&cc), at_revoke, "the revoked key came back");
    // ...until the node's owner gives it a new key.
    drop(daemon);
    let out = agent.run(&["rekey"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("new key"), "{}", text(&out));
    daemon = agent.spawn(&["run"]);
    heartbeats_reach(&cc, &id, at_revoke + 1);
    assert_eq!(enrolls(&cc), 2, "enrolled once more, with the new key");

    // Revoked by mistake: the admin lets the old key back, and the node returns by itself.
    assert_eq!(
        cc.unsigned_request("POST", &format!("/api/nodes/{id}/revoke"), None, "")
            .status,
        200
    );
    let at_second = heartbeats(&cc);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(heartbeats(&cc), at_second);
    let r = cc.unsigned_request(
        "POST",
        &format!("/api/nodes/{id}/readmit"),
        Some("application/json"),
        r#"{"allow_old_key": true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["event"]["body"]["allow_old_key"], true);
    heartbeats_reach(&cc, &id, at_second + 1);
    drop(daemon);

    // The audit trail: who did what, and the refusals (the agent tried every second: they
    // are logged once per reason, not once per try).
    let events = cc.get_json(&format!(
        "/api/events?node_id={id}&kind=node_revoked,node_readmitted,enroll_refused&order=oldest"
    ));
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "node_revoked",
            "enroll_refused",
            "node_readmitted",
            "enroll_refused",
            "node_revoked",
            "node_readmitted"
        ],
        "{events:#}"
    );
    assert_eq!(events[0]["body"]["reason"], "lost laptop");
    assert_eq!(events[0]["author"], "anonymous");
    assert_eq!(events[1]["body"]["code"], "node_revoked");
    assert_eq!(events[1]["body"]["severity"], "high");
    assert_eq!(events[3]["body"]["code"], "key_revoked");
}

/// Waits until node `id` has sent at least `n` heartbeats.
fn heartbeats_reach(cc: &CommandCenter, id: &str, n: u64) {
    let got = wait_for(Duration::from_secs(20), || {
        let r = cc.get(&format!("/api/nodes/{id}"));
        let have = (r.status == 200)
            .then(|| r.json()["summary"]["heartbeats"].as_u64())
            .flatten()?;
        (have >= n).then_some(have)
    });
    assert!(got.is_some(), "node {id} did not reach {n} heartbeats");
}

/// Issue 21 item 6: the replay guard lived in memory, so within 300 s after a restart a
/// captured request was accepted again. Now each accepted request is remembered in the log
/// directory before it is acted on, and a replay after `kill -9` and a restart is refused.
#[test]
fn a_request_is_accepted_at_most_once_across_a_restart() {
    let port = vaultmesh_testkit::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut cc = CommandCenter::start_with(&["--listen", &listen]);
    let a = node(30);
    a.enroll(&cc.url);
    let body = serde_json::to_vec(&hb_for(&a, 1)).unwrap();
    let captured = a.signed(&cc.url, "POST", HB, Some("application/json"), body);
    let replay = captured.try_clone().unwrap();
    let poll = a.signed(
        &cc.url,
        "GET",
        "/api/agent/commands?wait=0s",
        None,
        Vec::new(),
    );
    let poll_replay = poll.try_clone().unwrap();
    assert_eq!(captured.send().unwrap().status().as_u16(), 200);
    assert_eq!(poll.send().unwrap().status().as_u16(), 200);
    cc.kill9();
    cc.restart();
    for (what, r) in [("heartbeat", replay), ("poll", poll_replay)] {
        let r = Reply::from(r.send().unwrap());
        assert_eq!(r.status, 401, "{what} replayed after a restart: {}", r.body);
        assert!(error_of(&r).contains("replayed request"), "{}", r.body);
    }
    assert_eq!(
        cc.get_json(&format!("/api/nodes/{}", a.id))["summary"]["heartbeats"],
        1,
        "the replay stored nothing"
    );
}

/// Issue 21 item 7: the clock check used wrapping arithmetic, so a timestamp near `i64::MIN`
/// passed as "fresh".
#[test]
fn a_timestamp_at_the_edge_of_the_integers_is_stale_not_fresh() {
    let cc = CommandCenter::start();
    let a = node(31);
    a.enroll(&cc.url);
    for ts in [i64::MIN, i64::MIN + 1, i64::MAX] {
        let r = Reply::from(
            a.signed_at(
                &cc.url,
                "POST",
                HB,
                Some("application/json"),
                serde_json::to_vec(&hb_for(&a, 1)).unwrap(),
                ts,
            )
            .send()
            .unwrap(),
        );
        assert_eq!(r.status, 401, "{ts}: {}", r.body);
        assert!(
            error_of(&r).contains("away from the Command Center's clock"),
            "{}",
            r.body
        );
    }
}

/// Issue 21 item 7: enrollments with a bad token were cheap to send and each one filled the
/// replay guard. Now the token is checked before anything is remembered, and each source may
/// try a few times a second (Cf-Connecting-Ip behind the tunnel, trusted from loopback only).
#[test]
fn bad_enrollments_remember_nothing_and_are_rate_limited_per_source() {
    let cc = CommandCenter::start_with(&["--enroll-rate", "0.1", "--enroll-burst", "5"]);
    let seen = || {
        std::fs::metadata(cc.log_dir().join("seen-requests.bin"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(node(40 + i).enroll_with(&cc.url, "wrong-token-0123456789"));
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 3], "{statuses:?}");
    assert_eq!(seen(), 0, "no bad enrollment was remembered");
    // Behind cloudflared every connection is from loopback: the header names the source.
    let other = node(50);
    let req = serde_json::to_vec(&vaultmesh_proto::auth::EnrollRequest {
        node_id: other.id,
        public_key: other.key.public_base64(),
        hostname: "h".into(),
        os_profile: "ArchVault".into(),
        token: TEST_TOKEN.into(),
        nonce: None,
    })
    .unwrap();
    let r = Reply::from(
        other
            .signed(
                &cc.url,
                "POST",
                "/api/agent/enroll",
                Some("application/json"),
                req,
            )
            .header("cf-connecting-ip", "203.0.113.7")
            .send()
            .unwrap(),
    );
    assert_eq!(
        r.status, 200,
        "another source has its own allowance: {}",
        r.body
    );
    assert_eq!(seen(), 40, "the good one is remembered (40 bytes)");
}

/// Review of issue 20: one key bound to two node ids let a revoked key keep working under the
/// other id. A key now belongs to one node; and a key that older logs bound to several is
/// refused for all of them once it is revoked with any.
#[test]
fn one_key_belongs_to_one_node() {
    let mut cc = CommandCenter::start();
    let a = node(21);
    assert_eq!(a.enroll_with(&cc.url, TEST_TOKEN), 200);
    let twin = TestNode {
        id: node(22).id,
        key: a.key.clone(),
    };
    let r = twin.enroll_reply(&cc.url, TEST_TOKEN);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        error_of(&r).contains(&format!("already enrolled as node {}", a.id)),
        "{}",
        r.body
    );
    assert_eq!(send(&cc, &twin, &hb_for(&twin, 1)).status, 401);

    // A log from before the rule: the same key enrolled as a second node.
    let nodes = cc.log_dir().join("nodes.jsonl");
    let text = std::fs::read_to_string(&nodes).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(r#""kind":"enroll""#))
        .unwrap();
    let copy = line.replace(&a.id.to_string(), &twin.id.to_string());
    assert_ne!(copy, line);
    std::fs::write(&nodes, format!("{text}{copy}\n")).unwrap();
    cc.restart();
    assert_eq!(
        send(&cc, &twin, &hb_for(&twin, 1)).status,
        200,
        "as the old log says"
    );
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{}/revoke", a.id), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&cc, &twin, &hb_for(&twin, 2));
    assert_eq!(
        r.status, 401,
        "the revoked key under the other id: {}",
        r.body
    );
    assert!(error_of(&r).contains("same key"), "{}", r.body);
    // The other id is not stuck: it can be revoked, re-admitted and come back with its own key.
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{}/revoke", twin.id), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{}/readmit", twin.id), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let own = TestNode::with_key(twin.id, 1);
    assert_eq!(own.enroll_with(&cc.url, TEST_TOKEN), 200);
    assert_eq!(send(&cc, &own, &hb_for(&own, 3)).status, 200);
}

/// The node's row of `GET /api/nodes`.
fn node_row(cc: &CommandCenter, id: &str) -> serde_json::Value {
    let nodes = cc.get_json("/api/nodes");
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no node {id}: {nodes:#}"))
}

/// Review of issue 20: a revoked node used to stay in the fleet as if it were merely silent —
/// stale, then CRIT for good, scans scheduled, commands issued that it could never fetch.
#[test]
fn a_revoked_node_is_marked_ok_and_gets_no_commands() {
    let (cc, _keys, _) = vaultmesh_testkit::commanding_center(&["--attention-tick", "200ms"]);
    let a = node(31);
    assert_eq!(a.enroll_with(&cc.url, TEST_TOKEN), 200);
    assert_eq!(send(&cc, &a, &hb_for(&a, 1)).status, 200);
    let id = a.id.to_string();
    let issue = || {
        cc.post_json(
            "/api/commands",
            &serde_json::json!({"node_id": id, "action": "agent.ping", "args": {}, "issued_by": "test"}),
        )
    };
    assert_eq!(issue().status, 201);
    let r = cc.unsigned_request("POST", &format!("/api/nodes/{id}/revoke"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);

    let row = |want: &str| {
        wait_for(Duration::from_secs(10), || {
            let row = node_row(&cc, &id);
            (row["attention"]["reasons"][0]["rule"] == want).then_some(row)
        })
    };
    let revoked = row("revoked").expect("the revoked reason");
    assert_eq!(revoked["attention"]["level"], "ok", "{revoked:#}");
    assert_eq!(revoked["attention"]["reasons"].as_array().unwrap().len(), 1);
    assert_eq!(revoked["revoked"]["readmitted"], false, "{revoked:#}");
    assert!(revoked["revoked"]["by"].is_string(), "{revoked:#}");
    let r = issue();
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(error_of(&r).contains("was revoked"), "{}", r.body);
    let page = cc.get("/console");
    assert!(page.body.contains("data-revoked"), "the console marks it");

    let r = cc.unsigned_request("POST", &format!("/api/nodes/{id}/readmit"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let row_now = node_row(&cc, &id);
    assert_eq!(row_now["revoked"]["readmitted"], true, "{row_now:#}");
    assert_eq!(issue().status, 409, "not until it enrolls again");

    // Back with a new key: an ordinary node again.
    let back = TestNode::with_key(a.id, 1);
    assert_eq!(back.enroll_with(&cc.url, TEST_TOKEN), 200);
    assert_eq!(send(&cc, &back, &hb_for(&back, 2)).status, 200);
    let row_now = node_row(&cc, &id);
    assert!(row_now.get("revoked").is_none(), "{row_now:#}");
    assert_eq!(issue().status, 201);
}

/// Review of issue 21: a request refused for its node's rate (`429`) used to be remembered by
/// the replay guard first, so one node could fill the guard and lock the whole fleet out.
/// Now only requests within the node's rate are remembered.
#[test]
fn a_node_past_its_rate_fills_nothing_in_the_replay_guard() {
    let cc = CommandCenter::start_with(&["--agent-rate", "0.01", "--agent-burst", "3"]);
    let seen = || {
        std::fs::metadata(cc.log_dir().join("seen-requests.bin"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let a = node(60);
    a.enroll(&cc.url);
    let after_enroll = seen();
    let statuses: Vec<u16> = (1..=40)
        .map(|i| send(&cc, &a, &hb_for(&a, i)).status)
        .collect();
    assert_eq!(statuses[..3], [200; 3], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(
        seen() - after_enroll,
        3 * 40,
        "only the three accepted requests are remembered (40 bytes each)"
    );
    let b = node(61);
    b.enroll(&cc.url);
    assert_eq!(
        send(&cc, &b, &hb_for(&b, 1)).status,
        200,
        "another node is not affected"
    );
}

/// A credential count from `/metrics` (`vaultmesh_agent_requests_verified_total`).
fn verified(cc: &CommandCenter, credential: &str) -> f64 {
    vaultmesh_testkit::metric(
        &cc.get("/metrics").body,
        &format!("vaultmesh_agent_requests_verified_total{{credential=\"{credential}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Issue 24: a session MAC (`docs/PROTOCOL.md`, "Session MACs") is accepted once, from the
/// node whose key derived it, in a session with this Command Center's key that has not
/// expired — and never as an enrollment.
#[test]
fn session_macs_are_accepted_once_and_only_within_their_session() {
    let (cc, _keys, public) = vaultmesh_testkit::commanding_center(&[]);
    let a = node(20);
    a.enroll(&cc.url);
    let now = chrono::Utc::now().timestamp();
    let session = (now - 60, [0x42; 16]);
    let body = serde_json::to_vec(&hb_for(&a, 1)).unwrap();
    let send = |n: &TestNode, session: (i64, [u8; 16]), ts: i64, key: &str| {
        Reply::from(
            n.mac_request(&cc.url, "POST", HB, body.clone(), key, session, ts)
                .send()
                .unwrap(),
        )
    };
    assert_eq!(send(&a, session, now, &public).status, 200);
    assert_eq!(verified(&cc, "mac"), 1.0);
    // The same bytes again: a replay, as for a signature.
    let again = send(&a, session, now, &public);
    assert_eq!(again.status, 401);
    assert!(
        error_of(&again).contains("replayed request"),
        "{}",
        again.body
    );
    // Another key claiming the node derives another session key.
    let impostor = TestNode::with_key(a.id, 9);
    let r = send(&impostor, session, now - 1, &public);
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("MAC does not verify"), "{}", r.body);
    // A session with another Command Center key, and an expired one: start a new one, or sign.
    let other = NodeKeyText::other();
    let r = send(&a, session, now - 2, &other);
    assert_eq!(r.status, 401);
    assert!(
        error_of(&r).contains("but this Command Center's key is"),
        "{}",
        r.body
    );
    let r = send(&a, (now - 86_401, [0x42; 16]), now - 3, &public);
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("start a new one"), "{}", r.body);
    // A request timestamp outside the window is stale whatever the session.
    let r = send(&a, session, now - 3600, &public);
    assert!(
        error_of(&r).contains("away from the Command Center's clock"),
        "{}",
        r.body
    );
    // An enrollment proves the key it enrolls with a signature only.
    let b = node(21);
    let enroll = serde_json::to_vec(&serde_json::json!({
        "node_id": b.id, "public_key": b.key.public_base64(), "hostname": "b",
        "os_profile": "Generic", "token": TEST_TOKEN, "nonce": "00"
    }))
    .unwrap();
    let r = Reply::from(
        b.mac_request(
            &cc.url,
            "POST",
            "/api/agent/enroll",
            enroll,
            &public,
            session,
            now,
        )
        .send()
        .unwrap(),
    );
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("must be signed"), "{}", r.body);
    // Both credentials at once: refused, whatever each says.
    let h = a.key.sign_request("POST", HB, &a.id, now - 4, &body);
    let r = Reply::from(
        a.mac_request(&cc.url, "POST", HB, body.clone(), &public, session, now - 4)
            .header("x-vaultmesh-signature", h.signature)
            .send()
            .unwrap(),
    );
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("send one credential"), "{}", r.body);
    // The older agents' way, a signature per request, is still accepted beside it.
    assert_eq!(send_signed(&cc, &a, 2).status, 200);
    assert_eq!(verified(&cc, "signature"), 1.0);
    assert_eq!(
        cc.get_json(&format!("/api/nodes/{}", a.id))["summary"]["heartbeats"],
        2
    );
    // A revoked node's MACs stop at once, like its signatures.
    let r = cc.unsigned_request(
        "POST",
        &format!("/api/nodes/{}/revoke", a.id),
        Some("application/json"),
        r#"{"reason": "retired"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&a, session, now - 5, &public);
    assert_eq!(r.status, 401);
    assert!(error_of(&r).contains("was revoked"), "{}", r.body);
}

fn send_signed(cc: &CommandCenter, n: &TestNode, seq: u64) -> Reply {
    send(cc, n, &hb_for(n, seq))
}

/// Another public key than any Command Center in these tests holds.
struct NodeKeyText;

impl NodeKeyText {
    fn other() -> String {
        vaultmesh_proto::auth::NodeKey::from_seed([0x55; 32]).public_base64()
    }
}

/// A running agent against `cc` pinning the key `public` (logging at `info`), once three of
/// its heartbeats are in.
fn pinned_agent(
    cc: &CommandCenter,
    public: &str,
) -> (
    NodeAgent,
    vaultmesh_testkit::ChildGuard,
    vaultmesh_testkit::Captured,
) {
    let agent = NodeAgent::new(&cc.url)
        .env("VAULTMESH_INTERVAL", "1s")
        .env("RUST_LOG", "info")
        .env("VAULTMESH_CC_PUBKEY", public);
    let (daemon, log) = agent.spawn_captured(&["run"]);
    let (id, _) = wait_for(Duration::from_secs(20), || {
        agent
            .state_dir()
            .join("enrolled")
            .exists()
            .then(|| agent.identity())
    })
    .unwrap();
    heartbeats_reach(cc, &id.to_string(), 3);
    (agent, daemon, log)
}

/// Issue 24: the agent that pins the Command Center's key sends session MACs; pinned to a key
/// this Command Center does not hold (or against a Command Center older than MACs, which
/// answers `401` too), it sends the refused request again signed, and signs from then on.
#[test]
fn the_agent_sends_session_macs_and_signs_where_they_are_refused() {
    let (cc, _keys, public) = vaultmesh_testkit::commanding_center(&[]);
    let (_agent, _daemon, log) = pinned_agent(&cc, &public);
    assert!(verified(&cc, "mac") >= 3.0, "{}", log.text());
    assert_eq!(verified(&cc, "signature"), 0.0, "{}", log.text());

    let (elsewhere, _keys2, _) = vaultmesh_testkit::commanding_center(&[]);
    let (_agent, _daemon, log) = pinned_agent(&elsewhere, &public);
    assert_eq!(verified(&elsewhere, "mac"), 0.0);
    assert!(verified(&elsewhere, "signature") >= 3.0);
    assert_eq!(
        log.text().matches("refused a session MAC").count(),
        1,
        "one refusal, then signed for the hour:\n{}",
        log.text()
    );
}
