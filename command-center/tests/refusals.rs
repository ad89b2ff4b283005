//! The Command Center says in its log why it refused a request, with the real binary's stderr:
//! each kind of agent refusal (bad token, unknown node, bad signature, replay, stale clock,
//! unsigned, revoked, rate limit) and admin refusals, each naming reason, node and address,
//! never a token; and a flood of refusals yields a bounded number of lines.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::{CommandCenter, heartbeat_json, http, wait_for};

const ADMIN_TOKEN: &str = "admin-secret-0123456789abcdef";
const WRONG_ADMIN_TOKEN: &str = "wrong-admin-secret-0123456789";
const WRONG_ENROLL_TOKEN: &str = "wrong-enroll-secret-0123456789";

fn node(n: u128) -> TestNode {
    TestNode::new(Uuid::from_u128(
        0x9e00_0000_0000_4000_8000_0000_0000_0000 | n,
    ))
}

fn heartbeat(n: &TestNode, seq: u64) -> Vec<u8> {
    serde_json::to_vec(&heartbeat_json(&n.id.to_string(), "refused-host", seq)).unwrap()
}

/// Sends a heartbeat signed by `n` (not enrolling first); its status.
fn send(cc: &CommandCenter, n: &TestNode, seq: u64) -> u16 {
    n.signed(
        &cc.url,
        "POST",
        "/api/agent/heartbeat",
        Some("application/json"),
        heartbeat(n, seq),
    )
    .send()
    .unwrap()
    .status()
    .as_u16()
}

/// The refusal lines of the log with `reason`.
fn refusals(log: &str, reason: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("Request refused.") && l.contains(&format!(" reason={reason} ")))
        .map(str::to_string)
        .collect()
}

/// Waits until the log holds a refusal with `reason`; that line.
fn refused(cc: &CommandCenter, reason: &str) -> String {
    wait_for(Duration::from_secs(5), || {
        refusals(&cc.stderr(), reason).into_iter().next()
    })
    .unwrap_or_else(|| panic!("no refusal logged with reason={reason}:\n{}", cc.stderr()))
}

#[test]
fn every_kind_of_refusal_is_logged_with_reason_node_and_address_and_never_a_secret() {
    let cc = CommandCenter::start_with(&[
        "--admin-token",
        ADMIN_TOKEN,
        "--agent-rate",
        "0.01",
        "--agent-burst",
        "3",
    ]);
    let enrolled = node(1);
    enrolled.enroll(&cc.url);

    // A bad enrollment token.
    let newcomer = node(2);
    assert_eq!(newcomer.enroll_with(&cc.url, WRONG_ENROLL_TOKEN), 401);
    let line = refused(&cc, "bad_token");
    assert!(line.contains(&format!("node_id={}", newcomer.id)), "{line}");
    assert!(line.contains("remote=127.0.0.1:"), "{line}");
    assert!(line.contains("route=/api/agent/enroll"), "{line}");
    assert!(line.contains("enrollment token is not valid"), "{line}");

    // An unknown node, through the tunnel: the address Cloudflare saw is logged too.
    let stranger = node(3);
    let r = stranger
        .signed(
            &cc.url,
            "POST",
            "/api/agent/heartbeat",
            Some("application/json"),
            heartbeat(&stranger, 1),
        )
        .header("cf-connecting-ip", "203.0.113.7")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let line = refused(&cc, "unknown_node");
    assert!(line.contains(&format!("node_id={}", stranger.id)), "{line}");
    assert!(line.contains("cf_connecting_ip=203.0.113.7"), "{line}");
    assert!(line.contains("status=401"), "{line}");

    // Signed by another key than the enrolled one.
    let impostor = TestNode::with_key(enrolled.id, 1);
    assert_eq!(send(&cc, &impostor, 1), 401);
    let line = refused(&cc, "bad_signature");
    assert!(line.contains(&format!("node_id={}", enrolled.id)), "{line}");

    // The same request twice, then one signed 20 minutes ago, then none signed at all.
    let ts = chrono::Utc::now().timestamp();
    let replayed = || {
        enrolled
            .signed_at(
                &cc.url,
                "POST",
                "/api/agent/heartbeat",
                Some("application/json"),
                heartbeat(&enrolled, 7),
                ts,
            )
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(replayed(), 200);
    assert_eq!(replayed(), 401);
    assert!(refused(&cc, "replay").contains(&format!("node_id={}", enrolled.id)));
    let stale = enrolled
        .signed_at(
            &cc.url,
            "POST",
            "/api/agent/heartbeat",
            Some("application/json"),
            heartbeat(&enrolled, 8),
            ts - 1200,
        )
        .send()
        .unwrap();
    assert_eq!(stale.status().as_u16(), 401);
    assert!(refused(&cc, "stale_timestamp").contains("check the node's clock"));
    let unsigned = http()
        .post(format!("{}/api/agent/heartbeat", cc.url))
        .header("content-type", "application/json")
        .body(heartbeat(&enrolled, 9))
        .send()
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    assert!(refused(&cc, "unsigned").contains("node_id=-"));

    // Over its rate (a burst of 3, one request a minute and a half after that).
    let statuses: Vec<u16> = (10..14).map(|seq| send(&cc, &enrolled, seq)).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let line = refused(&cc, "rate_limited");
    assert!(line.contains(&format!("node_id={}", enrolled.id)), "{line}");
    assert!(line.contains("status=429"), "{line}");

    // Revoked by an admin.
    let retired = node(4);
    retired.enroll(&cc.url);
    let r = http()
        .post(format!("{}/api/nodes/{}/revoke", cc.url, retired.id))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(send(&cc, &retired, 1), 401);
    let line = refused(&cc, "revoked");
    assert!(line.contains(&format!("node_id={}", retired.id)), "{line}");

    // Admin requests without and with a wrong token.
    let admin = |token: Option<&str>| {
        let mut r = http().get(format!("{}/api/nodes", cc.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(admin(None), 401);
    assert_eq!(admin(Some(WRONG_ADMIN_TOKEN)), 401);
    assert_eq!(admin(Some(ADMIN_TOKEN)), 200);
    wait_for(Duration::from_secs(5), || {
        (refusals(&cc.stderr(), "admin_token").len() == 2).then_some(())
    })
    .expect("both admin refusals logged");
    let lines = refusals(&cc.stderr(), "admin_token");
    assert!(
        lines[0].contains("an admin bearer token is required"),
        "{lines:?}"
    );
    assert!(lines[1].contains("wrong admin token"), "{lines:?}");
    assert!(lines[1].contains("route=/api/nodes"), "{lines:?}");

    // No secret anywhere in the log.
    let log = cc.stderr();
    for secret in [
        ADMIN_TOKEN,
        WRONG_ADMIN_TOKEN,
        WRONG_ENROLL_TOKEN,
        vaultmesh_testkit::TEST_TOKEN,
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
}

#[test]
fn a_flood_of_refusals_yields_a_bounded_number_of_lines_and_a_count_of_the_rest() {
    let cc = CommandCenter::start();
    let total = 1000;
    for i in 0..total {
        assert_eq!(send(&cc, &node(100 + i), 1), 401);
    }
    // Server errors (here: commands without a signing key, 503) are not one line each either.
    for _ in 0..200 {
        let r = cc.post_json(
            "/api/commands",
            &serde_json::json!({"node_id": node(1).id, "action": "agent.ping", "args": {}, "issued_by": "t"}),
        );
        assert_eq!(r.status, 503, "{}", r.body);
    }
    // The budget: 10 lines, one saying the rest are counted, and once the minute is over, the
    // count of the rest.
    let summary = wait_for(Duration::from_secs(75), || {
        cc.stderr()
            .lines()
            .find(|l| l.contains("Suppressed") && l.contains("reason=unknown_node"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no summary line:\n{}", cc.stderr()));
    let log = cc.stderr();
    let logged = refusals(&log, "unknown_node").len();
    assert_eq!(logged, 10, "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("reason=unknown_node"))
            .count(),
        12,
        "{log}"
    );
    assert!(
        summary.contains(&format!("Suppressed {} more", total as usize - logged)),
        "{summary}"
    );
    assert!(log.lines().count() < 40, "the whole log stays short: {log}");
}
