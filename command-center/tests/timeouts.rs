//! Time limits with the real binary: the agent's long-poll may wait the documented 60 s (and a
//! command issued while it waits is delivered to it), and every request that runs out of time
//! gets a JSON error — 408 while its body is still arriving, 503 when the Command Center itself
//! did not answer in time.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::cloudflared::{FakeCloudflared, ReadyReply};
use vaultmesh_testkit::{CommandCenter, commanding_center, heartbeat_json};

/// A signed long-poll by `node` asking to wait `wait_s` seconds: (status, body, how long it took).
fn poll(cc_url: &str, node: &TestNode, wait_s: u64) -> (u16, Value, Duration) {
    let path = format!(
        "/api/agent/commands?wait={wait_s}s&nonce={}",
        Uuid::new_v4().simple()
    );
    let started = Instant::now();
    let r = node
        .signed(cc_url, "GET", &path, None, Vec::new())
        .timeout(Duration::from_secs(wait_s + 40))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    (status, v, started.elapsed())
}

/// A node that has reported (so commands can be issued to it), enrolled with the test token.
fn reporting_node(cc: &CommandCenter, n: u128, host: &str) -> TestNode {
    let id = Uuid::from_u128(0x7100_0000_0000_4000_8000_0000_0000_0000 | n);
    let r = cc.post_json(
        "/api/agent/heartbeat",
        &heartbeat_json(&id.to_string(), host, 1),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    TestNode::new(id)
}

#[test]
fn a_long_poll_waits_the_documented_sixty_seconds_and_gets_a_command_issued_after_forty_five() {
    // The defaults: --request-timeout 30s, which used to cut every poll off at 30 s.
    let (cc, _keys, _) = commanding_center(&[]);
    let idle = reporting_node(&cc, 1, "idle-node");
    let busy = reporting_node(&cc, 2, "busy-node");

    let url = cc.url.clone();
    let idle_poll = std::thread::spawn(move || poll(&url, &idle, 60));
    let url = cc.url.clone();
    let busy_id = busy.id;
    let busy_poll = std::thread::spawn(move || poll(&url, &busy, 60));

    std::thread::sleep(Duration::from_secs(45));
    let r = cc.post_json(
        "/api/commands",
        &json!({"node_id": busy_id, "action": "agent.ping", "issued_by": "test"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let command_id = r.json()["command"]["command_id"].clone();

    let (status, body, took) = busy_poll.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["command"]["command_id"], command_id, "{body}");
    assert!(
        took >= Duration::from_secs(45) && took < Duration::from_secs(50),
        "the waiting poll got the command when it was issued, not {took:?}"
    );

    let (status, body, took) = idle_poll.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]), "an idle poll ends with an empty list");
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(65),
        "an idle poll waits its whole 60 s: {took:?}"
    );

    // Beyond the documented bound: 400 with a JSON error, at once.
    let node = TestNode::new(Uuid::from_u128(0x7100_0000_0000_4000_8000_0000_0000_0001));
    let (status, body, took) = poll(&cc.url, &node, 61);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("wait must be at most 60s"),
        "{body}"
    );
    assert!(took < Duration::from_secs(5));
}

/// Sends a request whose body never arrives in full; returns the raw reply and how long it took.
/// It carries signature headers with a fresh timestamp: a request without them is refused
/// before its body is read (`tests/connections.rs`).
fn slow_body(cc_url: &str, path: &str) -> (String, Duration) {
    let addr = cc_url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n{}: 00000000-0000-4000-8000-000000000408\r\n{}: {}\r\n{}: c2lnbmF0dXJl\r\n\r\n{{\"kind\":",
        vaultmesh_proto::auth::HEADER_NODE,
        vaultmesh_proto::auth::HEADER_TIMESTAMP,
        chrono::Utc::now().timestamp(),
        vaultmesh_proto::auth::HEADER_SIGNATURE,
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    (reply, started.elapsed())
}

fn status_and_json(raw: &str) -> (u16, Value) {
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {raw:?}"));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{raw}"
    );
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {raw:?}")),
    )
}

#[test]
fn every_timeout_is_a_json_error_with_the_status_of_whoever_ran_out_of_time() {
    // An Access certs endpoint that takes 5 s: the Command Center cannot answer an admin
    // request within its 1 s limit.
    let certs = FakeCloudflared::start(ReadyReply {
        status: 200,
        body: vaultmesh_testkit::access::jwks(&["k1"]),
        delay: Duration::from_secs(5),
    });
    let cc = CommandCenter::start_with(&[
        "--request-timeout",
        "1s",
        "--access-team-domain",
        vaultmesh_testkit::access::TEAM,
        "--access-aud",
        vaultmesh_testkit::access::AUD,
        "--access-jwks-url",
        &format!("{}/ready", certs.url()),
    ]);

    // The client is too slow: 408, JSON.
    let (raw, took) = slow_body(&cc.url, "/api/agent/enroll");
    let (status, body) = status_and_json(&raw);
    assert_eq!(status, 408, "{raw}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("request body did not arrive within 1 s"),
        "{body}"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");

    // The Command Center is too slow: 503, JSON.
    let token = vaultmesh_testkit::access::mint(
        "k1",
        &vaultmesh_testkit::access::user_claims("alice@example.com"),
    );
    let started = Instant::now();
    let r = vaultmesh_testkit::http()
        .get(format!("{}/api/nodes", cc.url))
        .header("cf-access-jwt-assertion", token)
        .send()
        .unwrap();
    let took = started.elapsed();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let r = vaultmesh_testkit::Reply::from(r);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        retry_after.as_deref(),
        Some("10"),
        "a 503 says when to retry"
    );
    assert_eq!(r.content_type, "application/json", "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1 s"),
        "{}",
        r.body
    );
    assert!(took < Duration::from_secs(4), "{took:?}");

    // The long-poll is not cut off by the shorter limit: it waits its own 3 s.
    let node = reporting_node(&cc, 3, "poller");
    let (status, body, took) = poll(&cc.url, &node, 3);
    assert_eq!((status, body), (200, json!([])));
    assert!(took >= Duration::from_secs(3), "{took:?}");
}
