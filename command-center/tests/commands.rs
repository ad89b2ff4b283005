//! Commands end to end with the real binaries: keygen, policy refusals, delivery through the
//! long-poll within a second, the agent's own allowlist, and the receipt chain.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_proto::auth::NodeKey;
use vaultmesh_proto::command::{COMMAND_MAX, CommandReceipt, ReceiptStatus};
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::{
    CommandCenter, NodeAgent, Reply, cc_command, text, wait_for, workspace_root,
};

struct Fleet {
    cc: CommandCenter,
    agent: NodeAgent,
    /// The running agent (dropping it stops it).
    child: Option<vaultmesh_testkit::ChildGuard>,
    node_id: String,
    keydir: tempfile::TempDir,
    /// Between the agent and the Command Center, when asked for.
    proxy: Option<vaultmesh_testkit::proxy::LossyProxy>,
}

fn fleet() -> Fleet {
    fleet_with(&[])
}

fn fleet_with(extra: &[&str]) -> Fleet {
    fleet_via(extra, false)
}

/// A Command Center with a signing key and the shipped policies, and a real agent allowed
/// `agent.ping` and `checks.run` — reaching it through a [`LossyProxy`] when `lossy`.
///
/// [`LossyProxy`]: vaultmesh_testkit::proxy::LossyProxy
fn fleet_via(extra: &[&str], lossy: bool) -> Fleet {
    let keydir = tempfile::tempdir().unwrap();
    let key = keydir.path().join("cc.key");
    let out = cc_command(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let public = stdout
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .to_string();
    // keygen never overwrites a key.
    let again = cc_command(&["keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    let policies = workspace_root().join("policies");
    let mut args = vec![
        "--signing-key",
        key.to_str().unwrap(),
        "--policy-dir",
        policies.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let cc = CommandCenter::start_with(&args);
    let proxy = lossy.then(|| vaultmesh_testkit::proxy::LossyProxy::start(&cc.url));
    let agent = NodeAgent::new(proxy.as_ref().map_or(&cc.url, |p| &p.url))
        .env("VAULTMESH_CC_PUBKEY", &public)
        .env("VAULTMESH_OS_PROFILE", "ArchVault")
        .env("VAULTMESH_INTERVAL", "1s")
        .config("[commands]\nallow = [\"agent.ping\", \"checks.run\"]\n");
    let child = agent.spawn(&["run"]);
    let node_id = wait_for(Duration::from_secs(20), || {
        cc.get_json("/api/nodes").as_array()?.first()?["node_id"]
            .as_str()
            .map(str::to_string)
    })
    .expect("the agent reported");
    // Give the agent's long-poll a moment to open.
    std::thread::sleep(Duration::from_millis(500));
    Fleet {
        cc,
        agent,
        child: Some(child),
        node_id,
        keydir,
        proxy,
    }
}

fn issue(f: &Fleet, action: &str, args: Value) -> Reply {
    f.cc.post_json(
        "/api/commands",
        &json!({"node_id": f.node_id, "action": action, "args": args, "issued_by": "test"}),
    )
}

fn command(f: &Fleet, id: &str) -> Value {
    let all =
        f.cc.get_json(&format!("/api/commands?node_id={}&limit=1000", f.node_id));
    all.as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"]["command_id"] == id)
        .cloned()
        .unwrap()
}

fn finished(f: &Fleet, id: &str) -> Value {
    wait_for(Duration::from_secs(10), || {
        let c = command(f, id);
        (!matches!(c["status"].as_str(), Some("issued" | "delivered"))).then_some(c)
    })
    .expect("a receipt arrived")
}

#[test]
fn commands_round_trip_through_the_long_poll_and_policies_hold_on_both_sides() {
    let f = fleet();

    // Delivered within a second of being issued: the agent's long-poll is answered at once.
    let sse = vaultmesh_testkit::sse::SseClient::connect(
        &format!("{}/events?kinds=command", f.cc.url),
        None,
    );
    let started = Instant::now();
    let r = issue(&f, "agent.ping", json!({}));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["command"]["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.json()["command"]["seq"], "1");
    let done = finished(&f, &id);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "round trip took {elapsed:?}"
    );
    assert_eq!(done["status"], "ok");
    assert_eq!(done["chain_ok"], true);
    assert!(
        done["receipt"]["receipt"]["output"]
            .as_str()
            .unwrap()
            .starts_with("pong")
    );
    let statuses: Vec<String> = (0..3)
        .map(|_| {
            let (event, _, data) = sse.next_event(Duration::from_secs(5)).unwrap();
            assert_eq!(event, "command");
            serde_json::from_str::<Value>(&data).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["issued", "delivered", "completed"],
        "SSE follows the command"
    );

    // A typed action with arguments.
    let r = issue(&f, "checks.run", json!({"name": "memory"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let done = finished(&f, r.json()["command"]["command_id"].as_str().unwrap());
    assert_eq!(done["status"], "ok");
    let result: Value =
        serde_json::from_str(done["receipt"]["receipt"]["output"].as_str().unwrap()).unwrap();
    assert_eq!(result["name"], "memory");

    // The Command Center's policy forbids: 403 naming the rule; nothing is queued.
    let r = issue(&f, "service.restart", json!({"unit": "sshd.service"}));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap().contains(
            "ArchVault.toml: commands.allow[3].args.unit does not match \"sshd.service\""
        ),
        "{}",
        r.body
    );
    assert_eq!(issue(&f, "shell.exec", json!({"cmd": "id"})).status, 403);

    // The policy allows it but the node's own list does not: a signed `rejected` receipt.
    let r = issue(&f, "service.status", json!({"unit": "cloudflared.service"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let done = finished(&f, r.json()["command"]["command_id"].as_str().unwrap());
    assert_eq!(done["status"], "rejected");
    assert!(
        done["receipt"]["receipt"]["reason"]
            .as_str()
            .unwrap()
            .contains("not in this node's [commands] allow list")
    );
    assert_eq!(
        done["chain_ok"], true,
        "a rejection continues the chain too"
    );
    let rejected = f.cc.get_json(&format!(
        "/api/commands?node_id={}&status=rejected",
        f.node_id
    ));
    assert_eq!(rejected.as_array().unwrap().len(), 1, "{rejected}");
    assert_eq!(rejected[0]["command"]["action"], "service.status");
    let ok =
        f.cc.get_json(&format!("/api/commands?node_id={}&status=ok", f.node_id));
    assert_eq!(ok.as_array().unwrap().len(), 2, "{ok}");

    // The CLI wrapper.
    let out = cc_command(&[
        "command",
        "issue",
        "--node",
        &f.node_id,
        "--action",
        "checks.run",
        "--arg",
        "name=disk",
        "--json",
        "--url",
        &f.cc.url,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        finished(&f, issued["command"]["command_id"].as_str().unwrap())["status"],
        "ok"
    );
    let out = cc_command(&[
        "command",
        "issue",
        "--node",
        &f.node_id,
        "--action",
        "service.restart",
        "--arg",
        "unit=sshd.service",
        "--url",
        &f.cc.url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: 403: "),
        "{}",
        text(&out)
    );

    // Bad requests.
    assert_eq!(
        f.cc.post_json(
            "/api/commands",
            &json!({"node_id": Uuid::nil(), "action": "agent.ping"})
        )
        .status,
        404
    );
    assert_eq!(issue(&f, "agent.ping", json!("not an object")).status, 422);
    assert_eq!(f.cc.get("/api/commands?status=bogus").status, 400);
    // Too large for an agent's bounded poll reply (here by its issuer's name): 422, not queued.
    let r = f.cc.post_json(
        "/api/commands",
        &json!({"node_id": f.node_id, "action": "agent.ping", "issued_by": "x".repeat(COMMAND_MAX)}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .ends_with("bytes; at most 16384: shorten args or issued_by"),
        "{}",
        r.body
    );
}

#[test]
fn the_receipt_chain_is_checked_and_a_tampered_receipt_is_detected() {
    let mut f = fleet();
    let mut last = None;
    for _ in 0..3 {
        let r = issue(&f, "agent.ping", json!({}));
        let id = r.json()["command"]["command_id"]
            .as_str()
            .unwrap()
            .to_string();
        let done = finished(&f, &id);
        assert_eq!(done["chain_ok"], true);
        last = Some(done);
    }
    let last = last.unwrap();
    let prev_receipt: CommandReceipt =
        serde_json::from_value(last["receipt"]["receipt"].clone()).unwrap();

    // The node's real key, as an attacker with a copy of a receipt would not have: a receipt that
    // does not follow the chain is recorded as a break.
    let key = NodeKey::from_base64(
        &std::fs::read_to_string(f.agent.state_dir().join("node.key")).unwrap(),
    )
    .unwrap();
    let node = TestNode {
        id: f.node_id.parse().unwrap(),
        key: key.clone(),
    };
    // A command the (now stopped) agent never answers, and a receipt for it that does not
    // follow the chain.
    f.child.take();
    let r = issue(&f, "agent.ping", json!({}));
    let unanswered = Uuid::parse_str(r.json()["command"]["command_id"].as_str().unwrap()).unwrap();
    let mut forged = prev_receipt.clone();
    forged.command_id = unanswered;
    forged.status = ReceiptStatus::Failed;
    forged.prev_receipt_sha256 = Some("00".repeat(32));
    let forged_receipt = forged.clone();
    let r = node.post_receipt(&f.cc.url, forged, &key).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["chain_ok"], false);
    // Raised: the node shows a broken chain, and the dashboard calls it critical.
    let nodes = f.cc.get_json("/api/nodes");
    assert_eq!(nodes[0]["receipt_chain_ok"], false);
    let page = wait_for(Duration::from_secs(5), || {
        let page = f.cc.get("/");
        page.body.contains("CRIT").then_some(page)
    })
    .expect("the dashboard calls the node critical");
    assert!(page.body.contains("command receipt chain broken"));

    // A receipt whose signature is not the node's is refused outright.
    let other = NodeKey::from_seed([7u8; 32]);
    let r = node.post_receipt(&f.cc.url, prev_receipt, &other).unwrap();
    assert_eq!(r.status().as_u16(), 422);

    // Not cleared by itself (COMMANDS.md): a later receipt that continues the chain from the
    // break is `chain_ok`, and the node stays broken.
    let r = issue(&f, "agent.ping", json!({}));
    let next = node.pong_receipt(
        Uuid::parse_str(r.json()["command"]["command_id"].as_str().unwrap()).unwrap(),
        Some(vaultmesh_proto::command::SignedReceipt::sign(forged_receipt, &key).chain_hash()),
    );
    let r = node.post_receipt(&f.cc.url, next, &key).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().unwrap()["chain_ok"], true);
    assert_eq!(f.cc.get_json("/api/nodes")[0]["receipt_chain_ok"], false);
    // A silence on `receipt_chain` acknowledges it: still visible, no longer counted. (The
    // node may be CRIT for other reasons here: no tunnel runs in tests.)
    let silence = f.cc.post_json(
        "/api/events",
        &json!({"kind": "silence", "node_id": f.node_id,
                "body": {"rule": "receipt_chain", "until": "2099-01-01T00:00:00Z", "text": "investigated"}}),
    );
    assert_eq!(silence.status, 201, "{}", silence.body);
    wait_for(Duration::from_secs(10), || {
        let a = f.cc.get_json("/api/nodes")[0]["attention"].clone();
        let reason = a["reasons"]
            .as_array()?
            .iter()
            .find(|r| r["rule"] == "receipt_chain")?
            .clone();
        reason["suppressed_by"]
            .as_str()?
            .contains("silenced")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the silence suppresses receipt_chain: {}",
            f.cc.get_json("/api/nodes")[0]["attention"]
        )
    });
}

/// A receipt object signed the way any implementation of docs/PROTOCOL.md signs it: over the
/// RFC 8785 bytes of exactly this object.
fn signed_receipt_body(object: &Value, key: &NodeKey) -> Vec<u8> {
    let mut msg = b"vaultmesh-receipt-v1\n".to_vec();
    msg.extend(vaultmesh_proto::canonical::to_jcs(object).unwrap());
    serde_json::to_vec(&json!({"receipt": object, "signature": key.sign(&msg)})).unwrap()
}

fn post_raw_receipt(cc: &CommandCenter, node: &TestNode, body: Vec<u8>) -> Reply {
    Reply::from(
        node.signed(
            &cc.url,
            "POST",
            "/api/agent/receipts",
            Some("application/json"),
            body,
        )
        .send()
        .unwrap(),
    )
}

#[test]
fn receipts_in_every_valid_spelling_verify_over_their_own_bytes_and_chain() {
    let (mut cc, _keydir, _) = vaultmesh_testkit::commanding_center(&[]);
    let node = TestNode::new(Uuid::new_v4());
    let id = node.id.to_string();
    let hb = node
        .post_heartbeat(&cc.url, &vaultmesh_testkit::heartbeat_json(&id, "spell", 1))
        .unwrap();
    assert_eq!(hb.status().as_u16(), 200);
    let issue_one = |cc: &CommandCenter| {
        let r = cc.post_json(
            "/api/commands",
            &json!({"node_id": id, "action": "agent.ping", "issued_by": "test"}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["command"]["command_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let pong = vaultmesh_proto::canonical::sha256_hex(b"pong");
    // The same receipt, spelled five valid ways another agent might write it.
    let spellings: Vec<(&str, Value)> = vec![
        (
            "+00:00 offsets",
            json!({"status": "ok", "exit_code": 0, "output": "pong", "truncated": false, "output_sha256": pong,
                   "started_at": "2026-11-29T10:00:00+00:00", "finished_at": "2026-11-29T10:00:01+00:00"}),
        ),
        (
            "fractional seconds",
            json!({"status": "ok", "exit_code": 0, "output": "pong", "truncated": false, "output_sha256": pong,
                   "started_at": "2026-11-29T10:00:00.5Z", "finished_at": "2026-11-29T10:00:01.250Z"}),
        ),
        (
            "optional members omitted",
            json!({"status": "ok", "output_sha256": vaultmesh_proto::canonical::sha256_hex(b""),
                   "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:01Z"}),
        ),
        (
            "null members",
            json!({"status": "failed", "reason": null, "exit_code": null, "output": "", "truncated": false,
                   "output_sha256": vaultmesh_proto::canonical::sha256_hex(b""),
                   "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:01Z"}),
        ),
        (
            "an unknown member",
            json!({"status": "ok", "exit_code": 0, "output": "pong", "truncated": false, "output_sha256": pong,
                   "started_at": "2026-11-29T10:00:00Z", "finished_at": "2026-11-29T10:00:01Z",
                   "runtime": {"cgroup": "/system.slice/vaultmesh-node-agent.service", "cpu_ms": 1.5}}),
        ),
    ];
    let mut prev: Option<String> = None;
    let mut sent = Vec::new();
    for (what, mut object) in spellings {
        let command_id = issue_one(&cc);
        object["command_id"] = json!(command_id);
        object["node_id"] = json!(id);
        // The first receipt of a node has no predecessor: spelled `null` here.
        object["prev_receipt_sha256"] = json!(prev);
        let r = post_raw_receipt(&cc, &node, signed_receipt_body(&object, &node.key));
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(r.json()["chain_ok"], true, "{what}: {}", r.body);
        prev = Some(vaultmesh_proto::canonical::sha256_hex(
            &vaultmesh_proto::canonical::to_jcs(&object).unwrap(),
        ));
        sent.push((command_id, object));
    }
    // Served and logged exactly as received (unknown member included), so anyone can verify
    // the signature and the chain again offline.
    let log = std::fs::read_to_string(cc.log_dir().join("commands.jsonl")).unwrap();
    for (command_id, object) in &sent {
        let line: Value = log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|l| l["kind"] == "receipt" && l["record"]["receipt"]["command_id"] == *command_id)
            .unwrap();
        assert_eq!(&line["record"]["receipt"], object);
        let listed = cc.get_json(&format!("/api/commands?node_id={id}&limit=1000"));
        let listed = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["command"]["command_id"] == *command_id)
            .unwrap();
        assert_eq!(&listed["receipt"]["receipt"], object);
        assert_eq!(listed["chain_ok"], true);
    }
    assert_eq!(cc.get_json("/api/nodes")[0]["receipt_chain_ok"], true);

    // After a restart the chain is rebuilt from the log by the same bytes: the next one chains.
    cc.restart();
    let command_id = issue_one(&cc);
    let next = json!({"command_id": command_id, "node_id": id, "status": "ok", "output_sha256": pong,
                      "output": "pong", "started_at": "2026-11-29T10:00:02Z",
                      "finished_at": "2026-11-29T10:00:02Z", "prev_receipt_sha256": prev});
    // Changed after signing (a member added, or one rewritten): refused, not recorded.
    let mut with_extra = next.clone();
    let body = signed_receipt_body(&next, &node.key);
    with_extra["extra"] = json!(1);
    let mut tampered: Value = serde_json::from_slice(&body).unwrap();
    tampered["receipt"] = with_extra;
    let r = post_raw_receipt(&cc, &node, serde_json::to_vec(&tampered).unwrap());
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("signature"), "{}", r.body);
    tampered["receipt"] = next.clone();
    tampered["receipt"]["finished_at"] = json!("2026-11-29T10:00:02.000Z");
    let r = post_raw_receipt(&cc, &node, serde_json::to_vec(&tampered).unwrap());
    assert_eq!(
        r.status, 422,
        "a different spelling is different bytes: {}",
        r.body
    );
    let r = post_raw_receipt(&cc, &node, body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["chain_ok"], true, "{}", r.body);
}

#[test]
fn hostile_commands_reaching_the_real_agent_are_rejected_with_receipts_and_never_run() {
    // A Command Center whose log an attacker could write: it will deliver whatever it replays.
    let port = vaultmesh_testkit::free_port().to_string();
    let mut f = fleet_with(&["--listen", &format!("127.0.0.1:{port}")]);
    let r = issue(&f, "checks.run", json!({"name": "load"}));
    let genuine_id = r.json()["command"]["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(finished(&f, &genuine_id)["status"], "ok");
    let genuine_line = std::fs::read_to_string(f.cc.log_dir().join("commands.jsonl"))
        .unwrap()
        .lines()
        .find(|l| l.contains(&genuine_id) && l.starts_with("{\"kind\":\"command\""))
        .unwrap()
        .to_string();
    let genuine: vaultmesh_proto::command::SignedCommand = serde_json::from_value(
        serde_json::from_str::<Value>(&genuine_line).unwrap()["record"].clone(),
    )
    .unwrap();

    let cc_key =
        NodeKey::from_base64(&std::fs::read_to_string(f.keydir.path().join("cc.key")).unwrap())
            .unwrap();
    let node: Uuid = f.node_id.parse().unwrap();
    let fresh = |seq: u64, action: &str| {
        let now = chrono::Utc::now();
        vaultmesh_proto::command::Command {
            command_id: Uuid::now_v7(),
            node_id: node,
            action: action.into(),
            args: json!({}),
            nonce: Uuid::new_v4().to_string(),
            seq: seq.to_string(),
            issued_at: now,
            expires_at: now + chrono::Duration::minutes(5),
            issued_by: "attacker".into(),
        }
    };
    let mut flipped =
        vaultmesh_proto::command::SignedCommand::sign(fresh(100, "agent.ping"), &cc_key);
    // Changed after signing.
    let mut object = flipped.command.object().clone();
    object.insert("args".into(), json!({"x": "y"}));
    flipped.command = vaultmesh_proto::command::AsSigned::from_object(object).unwrap();
    let other_key = vaultmesh_proto::command::SignedCommand::sign(
        fresh(101, "agent.ping"),
        &NodeKey::from_seed([9u8; 32]),
    );
    let mut future = fresh(102, "agent.ping");
    future.issued_at += chrono::Duration::hours(1);
    future.expires_at += chrono::Duration::hours(1);
    let future = vaultmesh_proto::command::SignedCommand::sign(future, &cc_key);
    let crafted = [
        (genuine.clone(), "already received (replay)"),
        (flipped, "signature does not verify"),
        (other_key, "signature does not verify"),
        (future, "issued in the future"),
    ];

    f.cc.kill9();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(f.cc.log_dir().join("commands.jsonl"))
        .unwrap();
    use std::io::Write;
    for (c, _) in &crafted {
        writeln!(
            log,
            "{}",
            json!({"kind": "command", "ts": chrono::Utc::now(), "node_id": node, "record": c})
        )
        .unwrap();
    }
    drop(log);
    f.cc.restart();

    for (c, reason) in &crafted {
        let id = c.command.command_id.to_string();
        let done = wait_for(Duration::from_secs(15), || {
            let v = command(&f, &id);
            let r = v["receipt"]["receipt"].clone();
            // The genuine command's old receipt is there too; wait for the new one.
            (r["status"] == "rejected").then_some(r)
        })
        .unwrap_or_else(|| panic!("no rejection receipt for {id} ({reason})"));
        assert!(
            done["reason"].as_str().unwrap().contains(reason),
            "{id}: {done}"
        );
    }
    // Nothing ran: the only ok receipt is the genuine command's first run, and the chain held.
    let all =
        f.cc.get_json(&format!("/api/commands?node_id={}&limit=1000", f.node_id));
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|c| c["chain_ok"] != false),
        "{all}"
    );
    let nodes = f.cc.get_json("/api/nodes");
    assert_eq!(nodes[0]["receipt_chain_ok"], true);
}

#[test]
fn commands_issued_back_to_back_are_each_delivered_within_a_second() {
    // Each receipt makes the agent poll again at once: two polls signed in the same second
    // must still differ, or the second is refused as a replay and delivery stalls.
    let f = fleet();
    let refused_polls = || {
        vaultmesh_testkit::metric(
            &f.cc.get("/metrics").body,
            "vaultmesh_requests_rejected_total{reason=\"unauthorized\",route=\"/api/agent/commands\"}",
        )
    };
    // (A poll sent before the agent's enrollment completed may have been refused at start.)
    let refused_before = refused_polls();
    for i in 0..4 {
        let r = issue(&f, "agent.ping", json!({}));
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.json()["command"]["command_id"]
            .as_str()
            .unwrap()
            .to_string();
        let start = Instant::now();
        let done = finished(&f, &id);
        assert_eq!(done["receipt"]["receipt"]["status"], "ok", "{done}");
        assert!(
            start.elapsed() < Duration::from_millis(1000),
            "command {i} took {:?}",
            start.elapsed()
        );
    }
    // And no poll was refused on the way (a refused poll costs the agent a backoff).
    assert_eq!(refused_polls(), refused_before);
}

/// Issue 20 item 4: the reply to a receipt is lost; the agent sends it again. That used to be
/// recorded twice, the second time as a chain break (CRIT). Now the same receipt again is `200`
/// with `duplicate: true` and nothing is appended, and the chain goes on unbroken.
#[test]
fn a_receipt_whose_reply_was_lost_is_accepted_once_and_the_chain_holds() {
    let f = fleet_via(&[], true);
    let proxy = f.proxy.as_ref().unwrap();
    proxy.drop_replies("/api/agent/receipts", 1);
    let first = issue(&f, "agent.ping", json!({}));
    assert_eq!(first.status, 201, "{}", first.body);
    let first = first.json()["command"]["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = finished(&f, &first);
    assert_eq!(done["status"], "ok");
    assert_eq!(done["chain_ok"], true);
    // The agent resends until it hears back; its resend is the duplicate.
    wait_for(Duration::from_secs(90), || {
        let log = std::fs::read_to_string(f.cc.log_dir().join("commands.jsonl")).ok()?;
        let dropped = proxy.dropped();
        (dropped.len() == 1 && !log.is_empty()).then_some(())
    })
    .expect("the first reply was dropped");
    // A second command: its receipt chains to the first — the agent moved on.
    let second = issue(&f, "agent.ping", json!({}));
    assert_eq!(second.status, 201, "{}", second.body);
    let second = second.json()["command"]["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_for(Duration::from_secs(90), || {
        let c = command(&f, &second);
        (c["status"] == "ok").then_some(c)
    })
    .expect("the second command's receipt");
    assert_eq!(done["chain_ok"], true, "{done:#}");
    let log = std::fs::read_to_string(f.cc.log_dir().join("commands.jsonl")).unwrap();
    let receipts = |id: &str| {
        log.lines()
            .filter(|l| l.contains(r#""kind":"receipt""#) && l.contains(id))
            .count()
    };
    assert_eq!((receipts(&first), receipts(&second)), (1, 1), "{log}");
    let node = f.cc.get_json(&format!("/api/nodes/{}", f.node_id));
    let reasons = node["summary"]["attention"]["reasons"].to_string();
    assert!(
        !reasons.contains("receipt_chain"),
        "no false CRIT: {reasons}"
    );
    let metrics = f.cc.get("/metrics").body;
    assert_eq!(
        vaultmesh_testkit::metric(&metrics, "vaultmesh_receipt_chain_breaks_total"),
        Some(0.0)
    );
}

/// A second, *different* receipt for a command that has one is `409` and a `receipt_conflict`
/// event — not a chain break; the same receipt again is `200 {"duplicate": true}`.
#[test]
fn a_different_second_receipt_is_a_conflict_not_a_chain_break() {
    let (cc, _keys, _) = vaultmesh_testkit::commanding_center(&[]);
    let node = TestNode::new(Uuid::from_u128(0xc0f1_0000_0000_4000_8000_0000_0000_0001));
    let id = node.id.to_string();
    assert_eq!(
        node.post_heartbeat(&cc.url, &vaultmesh_testkit::heartbeat_json(&id, "c1", 1))
            .unwrap()
            .status(),
        200
    );
    let r = cc.post_json(
        "/api/commands",
        &json!({"node_id": id, "action": "agent.ping", "args": {}, "issued_by": "test"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let command_id = Uuid::parse_str(r.json()["command"]["command_id"].as_str().unwrap()).unwrap();
    let receipt = node.pong_receipt(command_id, None);
    let post = |receipt: &CommandReceipt| {
        // A request identical to one within the same second is a replay: space them.
        std::thread::sleep(Duration::from_millis(1100));
        Reply::from(
            node.post_receipt(&cc.url, receipt.clone(), &node.key)
                .unwrap(),
        )
    };
    let r = post(&receipt);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["duplicate"], false);
    let again = post(&receipt);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(again.json()["chain_ok"], true);
    let mut other = receipt.clone();
    other.status = ReceiptStatus::Failed;
    other.output = "something else".into();
    let r = post(&other);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("already has a different receipt"),
        "{}",
        r.body
    );
    // Sent again (and again): still 409, but one event — a node cannot flood the event log.
    for _ in 0..2 {
        assert_eq!(post(&other).status, 409);
    }
    let log = std::fs::read_to_string(cc.log_dir().join("commands.jsonl")).unwrap();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(r#""kind":"receipt""#))
            .count(),
        1,
        "nothing appended for the duplicate or the conflict"
    );
    let events = cc.get_json(&format!("/api/events?kind=receipt_conflict&node_id={id}"));
    assert_eq!(events.as_array().unwrap().len(), 1, "{events:#}");
    assert_eq!(events[0]["body"]["command_id"], command_id.to_string());
    assert_eq!(
        events[0]["body"]["kept_sha256"],
        vaultmesh_proto::command::SignedReceipt::sign(receipt, &node.key).chain_hash()
    );
    let node_view = cc.get_json(&format!("/api/nodes/{id}"));
    assert!(
        !node_view["summary"]["attention"]["reasons"]
            .to_string()
            .contains("receipt_chain"),
        "{node_view:#}"
    );
}

/// Review of issue 20: a receipt refused with 401 (the node revoked while it was waiting) used
/// to be dropped by the agent, and its next receipt broke the chain for good. Now the agent
/// keeps it; after re-admission and `rekey` it is signed again with the new key, delivered,
/// and the chain holds.
#[test]
fn a_receipt_waiting_through_a_revocation_and_a_rekey_is_delivered_and_the_chain_holds() {
    let mut f = fleet_via(&[], true);
    let proxy = f.proxy.as_ref().unwrap();
    proxy.refuse("/api/agent/receipts");
    let r = issue(&f, "agent.ping", json!({}));
    assert_eq!(r.status, 201, "{}", r.body);
    let first = r.json()["command"]["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let waiting = || {
        std::fs::read_to_string(f.agent.state_dir().join("receipts.state"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["unsent"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(30), || (waiting() == 1).then_some(()))
        .expect("the agent ran the command and holds its receipt");
    let id = f.node_id.clone();
    let r =
        f.cc.unsigned_request("POST", &format!("/api/nodes/{id}/revoke"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    f.proxy.as_ref().unwrap().forward_all();
    // Refused now with 401: kept, not dropped.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        waiting(),
        1,
        "the receipt is kept while the node is refused"
    );
    let r =
        f.cc.unsigned_request("POST", &format!("/api/nodes/{id}/readmit"), None, "");
    assert_eq!(r.status, 200, "{}", r.body);
    f.child.take();
    let out = f.agent.run(&["rekey"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 receipt(s) waiting"),
        "{}",
        text(&out)
    );
    f.child = Some(f.agent.spawn(&["run"]));
    let done = wait_for(Duration::from_secs(60), || {
        let c = command(&f, &first);
        (c["status"] == "ok").then_some(c)
    })
    .expect("the waiting receipt was delivered");
    assert_eq!(done["chain_ok"], true, "{done:#}");
    let second = issue(&f, "agent.ping", json!({}));
    let second = second.json()["command"]["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = wait_for(Duration::from_secs(60), || {
        let c = command(&f, &second);
        (c["status"] == "ok").then_some(c)
    })
    .expect("the next command's receipt");
    assert_eq!(done["chain_ok"], true, "{done:#}");
}
