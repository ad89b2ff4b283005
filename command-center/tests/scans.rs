//! Sovereign scans end to end: the scan API's refusals, and a real agent scanning a fixture tree
//! on a signed `scan.sovereign` command, with the report in `sovereign-scans.jsonl` and
//! `GET /api/nodes/{id}`, drift raising attention when a fixture file changes, and all of it
//! surviving a restart of the Command Center.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::{CommandCenter, NodeAgent, heartbeat_json, keygen, wait_for};

const NODE: &str = "5ca40000-0000-4000-8000-000000000001";

fn report(node: &str, scan_id: u128, findings: Value) -> Value {
    let counts = findings
        .as_array()
        .unwrap()
        .iter()
        .fold(serde_json::Map::new(), |mut m, f| {
            let s = f["severity"].as_str().unwrap().to_string();
            let n = m.get(&s).and_then(Value::as_u64).unwrap_or(0);
            m.insert(s, json!(n + 1));
            m
        });
    json!({
        "scan_id": Uuid::from_u128(scan_id), "node_id": node, "profile": "ArchVault",
        "started_at": "2026-11-29T10:00:00Z", "finished_at": format!("2026-11-29T10:00:{:02}Z", scan_id % 60),
        "findings": findings, "counts": counts,
        "fingerprint": {"file_hashes": {"/etc/passwd": format!("{scan_id:064x}")}},
        "rules": ["file_hashes"],
    })
}

fn scan_lines(cc: &CommandCenter) -> Vec<Value> {
    std::fs::read_to_string(cc.log_dir().join("sovereign-scans.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_scan_api_stores_each_report_once_and_refuses_bad_ones_clearly() {
    let cc = CommandCenter::start();
    let finding = json!([{"rule": "sshd", "severity": "high", "title": "Root may log in over SSH",
        "detail": "", "evidence": "/etc/ssh/sshd_config:3: PermitRootLogin yes"}]);
    let r = cc.post_json("/api/agent/scans", &report(NODE, 1, finding.clone()));
    assert_eq!(
        r.status, 409,
        "a node must send a heartbeat first: {}",
        r.body
    );
    assert!(r.json()["error"].as_str().unwrap().contains("heartbeat"));
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n1", 1))
            .status,
        200
    );
    let r = cc.post_json("/api/agent/scans", &report(NODE, 1, finding.clone()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["duplicate"], false);
    let again = cc.post_json("/api/agent/scans", &report(NODE, 1, finding.clone()));
    assert_eq!(again.json()["duplicate"], true, "a retry is stored once");
    assert_eq!(scan_lines(&cc).len(), 1);
    // Second scan: the passwd hash changed, which is drift.
    let r = cc.post_json("/api/agent/scans", &report(NODE, 2, json!([])));
    assert_eq!(r.json()["drift"], 1, "{}", r.body);
    let detail = cc.get_json(&format!("/api/nodes/{NODE}"));
    assert_eq!(
        detail["latest_scan"]["scan_id"],
        Uuid::from_u128(2).to_string()
    );
    assert_eq!(detail["drift"][0]["key"], "/etc/passwd");
    assert_eq!(
        detail["summary"]["last_scan"]["scan_id"],
        Uuid::from_u128(2).to_string()
    );

    // A large report (1.5 MiB of facts, far above the 256 KiB of other agent requests) fits.
    let mut big = report(NODE, 5, json!([]));
    for i in 0..6000 {
        big["fingerprint"]["file_hashes"][format!("/srv/data/{i:05}")] = json!("x".repeat(200));
    }
    let r = cc.post_json("/api/agent/scans", &big);
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);

    // Refusals: inconsistent counts, bad JSON, a report for another node.
    let mut bad = report(NODE, 3, finding.clone());
    bad["counts"] = json!({});
    let r = cc.post_json("/api/agent/scans", &bad);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap().contains("counts"),
        "{}",
        r.body
    );
    let r = cc.request(
        "POST",
        "/api/agent/scans",
        Some("application/json"),
        "{\"scan_id\": ",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let other = TestNode::new(Uuid::from_u128(77));
    other.enroll(&cc.url);
    let body = serde_json::to_vec(&report(NODE, 4, json!([]))).unwrap();
    let r = other
        .signed(
            &cc.url,
            "POST",
            "/api/agent/scans",
            Some("application/json"),
            body,
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(scan_lines(&cc).len(), 3, "nothing refused was stored");
}

/// A fixture node: a scan root and a procfs with one unexpected listener.
fn fixture(dir: &Path) {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "root/etc/ssh/sshd_config",
        "PermitRootLogin no\nPasswordAuthentication no\n",
    );
    w("root/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    w("root/etc/group", "root:x:0:\n");
    w(
        "proc/net/tcp",
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0\n",
    );
    w("proc/sys/kernel/randomize_va_space", "2\n");
}

#[test]
fn a_real_agent_scans_on_command_and_drift_raises_attention_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let (key, public) = keygen(tmp.path());
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("Test.toml"),
        "[commands]\nallow = [{ action = \"scan.sovereign\" }]\n\
         [attention]\ntunnel = \"ok\"\n[scan]\ninterval = \"0\"\n\
         [network]\nallowed_listeners = [\"tcp/22\"]\n",
    )
    .unwrap();
    let mut cc = CommandCenter::start_with(&[
        "--signing-key",
        &key,
        "--policy-dir",
        policies.to_str().unwrap(),
        "--attention-tick",
        "100ms",
    ]);
    let root = tmp.path().join("root");
    let agent = NodeAgent::new(&cc.url)
        .env("VAULTMESH_CC_PUBKEY", &public)
        .env("VAULTMESH_OS_PROFILE", "Test")
        .env("VAULTMESH_INTERVAL", "1s")
        .config(&format!(
            "[checks.sovereign_scan]\ninterval = \"24h\"\nroot = \"{}\"\nproc = \"{}\"\n\
             [checks.sovereign_scan.rules.sysctl]\nexpect = {{ \"kernel.randomize_va_space\" = 2 }}\n",
            root.display(),
            tmp.path().join("proc").display()
        ));
    let mut child = agent.spawn(&["run"]);

    // The agent scans once at start; the report arrives on its own.
    let (node_id, first) = wait_for(Duration::from_secs(20), || {
        let nodes = cc.get_json("/api/nodes");
        let id = nodes.as_array()?.first()?["node_id"].as_str()?.to_string();
        let d = cc.get_json(&format!("/api/nodes/{id}"));
        let scan = d["latest_scan"]["scan_id"].as_str()?.to_string();
        Some((id, scan))
    })
    .unwrap_or_else(|| panic!("no scan arrived: {:?}", child.wait_exit(Duration::ZERO)));
    let detail = cc.get_json(&format!("/api/nodes/{node_id}"));
    let scan = &detail["latest_scan"];
    assert_eq!(scan["profile"], "Test");
    assert_eq!(
        scan["fingerprint"]["listeners"],
        json!({"tcp/0.0.0.0:22": "uid=0", "tcp/0.0.0.0:8080": "uid=1000"})
    );
    assert_eq!(scan["fingerprint"]["sshd"]["permitrootlogin"], "no");
    // The profile allows only SSH to listen: the 8080 listener needs attention.
    let reasons = wait_for(Duration::from_secs(5), || {
        let a = cc.get_json(&format!("/api/nodes/{node_id}"))["summary"]["attention"].clone();
        a.to_string().contains("tcp/0.0.0.0:8080").then_some(a)
    })
    .expect("the unexpected listener is a reason");
    // (The reason's own level: the test host's real load may add `check.load` reasons.)
    let listeners = reasons["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "listeners")
        .unwrap_or_else(|| panic!("{reasons}"));
    assert_eq!(listeners["level"], "attn", "{reasons}");

    // Root login is switched on; an admin asks for a scan.
    std::fs::write(
        root.join("etc/ssh/sshd_config"),
        "PermitRootLogin yes\nPasswordAuthentication no\n",
    )
    .unwrap();
    let r = cc.post_json(
        "/api/commands",
        &json!({"node_id": node_id, "action": "scan.sovereign", "issued_by": "test"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let command_id = r.json()["command"]["command_id"]
        .as_str()
        .unwrap()
        .to_string();
    let receipt = wait_for(Duration::from_secs(20), || {
        let list = cc.get_json(&format!("/api/commands?node_id={node_id}"));
        list.as_array()?
            .iter()
            .find(|c| c["command"]["command_id"] == command_id.as_str() && c["status"] == "ok")
            .cloned()
    })
    .expect("the scan command completed");
    let output: Value =
        serde_json::from_str(receipt["receipt"]["receipt"]["output"].as_str().unwrap()).unwrap();
    let second = output["scan_id"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(output["counts"]["high"], 1, "{output}");

    let detail = wait_for(Duration::from_secs(10), || {
        let d = cc.get_json(&format!("/api/nodes/{node_id}"));
        (d["latest_scan"]["scan_id"] == second.as_str()
            && d["summary"]["attention"]["level"] == "crit")
            .then_some(d)
    })
    .expect("the new report is the latest and the node is critical");
    let finding = &detail["latest_scan"]["findings"][0];
    assert_eq!(finding["rule"], "sshd");
    assert_eq!(finding["severity"], "high");
    assert!(
        finding["evidence"]
            .as_str()
            .unwrap()
            .contains("PermitRootLogin yes")
    );
    let drift: Vec<&str> = detail["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert!(drift.contains(&"/etc/ssh/sshd_config"), "{drift:?}");
    assert!(drift.contains(&"permitrootlogin"), "{drift:?}");
    let rules: Vec<String> = detail["summary"]["attention"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_string())
        .collect();
    for want in ["scan.findings", "drift", "listeners"] {
        assert!(
            rules.iter().any(|r| r == want),
            "{want} missing from {rules:?}"
        );
    }
    // Both reports are in the log, and the heartbeat points at the newest.
    let lines = scan_lines(&cc);
    assert!(
        lines
            .iter()
            .any(|l| l["record"]["scan_id"] == first.as_str())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["record"]["scan_id"] == second.as_str())
    );
    wait_for(Duration::from_secs(10), || {
        let d = cc.get_json(&format!("/api/nodes/{node_id}"));
        (d["latest"]["last_scan"]["scan_id"] == second.as_str()).then_some(())
    })
    .expect("the heartbeat carries last_scan");

    // A restart replays the scans: same latest report, same drift, same level.
    drop(child);
    cc.restart();
    let after = cc.get_json(&format!("/api/nodes/{node_id}"));
    assert_eq!(after["latest_scan"]["scan_id"], second.as_str());
    assert_eq!(after["drift"], detail["drift"]);
    assert_eq!(after["summary"]["attention"]["level"], "crit");
    child = agent.spawn(&["run"]);
    let _ = child.wait_exit(Duration::ZERO);
}

/// Issue 21 item 5: one node could fill the Command Center's disk with maximal scan reports
/// while inside its request rate. Now each node's bytes per hour are budgeted per kind: beyond,
/// `429` with `Retry-After` and a reason, counted in `/metrics`, and an attention reason on
/// that node — other nodes and the ledger carry on.
#[test]
fn a_node_over_its_scan_budget_is_refused_seen_and_alone() {
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keygen(keys.path());
    let cc = CommandCenter::start_with(&[
        "--scan-budget",
        "64KiB",
        "--signing-key",
        &key,
        "--ledger-interval",
        "100ms",
        "--attention-tick",
        "200ms",
    ]);
    let big = |n: u128| big_report(NODE, n);
    let other = "5ca40000-0000-4000-8000-000000000002";
    for node in [NODE, other] {
        assert_eq!(
            cc.post_json("/api/agent/heartbeat", &heartbeat_json(node, node, 1))
                .status,
            200
        );
    }
    let mut accepted = 0;
    let refused = (1..=20).find_map(|n| {
        let r = cc.post_json("/api/agent/scans", &big(n));
        if r.status == 200 {
            accepted += 1;
            None
        } else {
            Some(r)
        }
    });
    let refused = refused.expect("the budget ran out");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("more scan reports than its budget of 64 KiB an hour"),
        "{}",
        refused.body
    );
    assert!(
        accepted >= 2,
        "{accepted} accepted before the budget ran out"
    );
    // Another node has its own budget.
    let mut theirs = report(other, 500, json!([]));
    theirs["node_id"] = json!(other);
    assert_eq!(cc.post_json("/api/agent/scans", &theirs).status, 200);
    // A report larger than the whole budget can never fit.
    let mut huge = big(99);
    let facts: serde_json::Map<String, Value> = (0..2000)
        .map(|i| (format!("/usr/bin/f{i:05}"), json!(format!("{i:064x}"))))
        .collect();
    huge["fingerprint"]["file_hashes"] = Value::Object(facts);
    assert_eq!(cc.post_json("/api/agent/scans", &huge).status, 413);
    // Seen: the metric and the node's attention.
    let metrics = cc.get("/metrics").body;
    assert!(
        vaultmesh_testkit::metric(&metrics, r#"vaultmesh_budget_refusals_total{kind="scans"}"#)
            .is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
    let reason = wait_for(Duration::from_secs(10), || {
        let n = cc.get_json(&format!("/api/nodes/{NODE}"));
        n["summary"]["attention"]["reasons"]
            .as_array()?
            .iter()
            .find(|r| r["rule"] == "budget.scans")
            .cloned()
    })
    .expect("the node's attention says why");
    assert_eq!(reason["level"], "attn");
    let theirs = cc.get_json(&format!("/api/nodes/{other}"));
    assert!(
        !theirs["summary"]["attention"]
            .to_string()
            .contains("budget."),
        "{theirs:#}"
    );
    // The ledger covers exactly what was stored.
    let root = wait_for(Duration::from_secs(10), || {
        let r = cc.get_json("/api/ledger/root");
        (r["size"] == accepted + 1).then_some(r)
    });
    assert!(root.is_some(), "{:#}", cc.get_json("/api/ledger/root"));
}

/// A scan report of `node` with 200 file hashes (about 18 KB): budgets fill up quickly.
fn big_report(node: &str, n: u128) -> Value {
    let mut r = report(node, n, json!([]));
    let facts: serde_json::Map<String, Value> = (0..200)
        .map(|i| {
            (
                format!("/etc/file-{i:04}"),
                json!(format!("{:064x}", n * 1000 + i)),
            )
        })
        .collect();
    r["fingerprint"]["file_hashes"] = Value::Object(facts);
    r
}

/// Review of issue 21: budgets were per node id only, and ids are cheap for whoever holds a
/// multi-use enrollment token. The fleet as a whole has a budget per kind too.
#[test]
fn many_node_ids_within_their_own_budgets_are_stopped_by_the_fleets() {
    let cc = CommandCenter::start_with(&["--scan-budget", "64KiB", "--fleet-scan-budget", "40KiB"]);

    let ids: Vec<String> = (1..=6)
        .map(|i| format!("5ca40000-0000-4000-8000-0000000001{i:02}"))
        .collect();
    let mut statuses = Vec::new();
    let mut refused = None;
    for (i, id) in ids.iter().enumerate() {
        let hb = heartbeat_json(id, id, 1);
        assert_eq!(cc.post_json("/api/agent/heartbeat", &hb).status, 200);
        let r = cc.post_json("/api/agent/scans", &big_report(id, i as u128 + 1));
        statuses.push(r.status);
        if r.status != 200 && refused.is_none() {
            refused = Some((id.clone(), r));
        }
    }
    let (id, r) = refused.unwrap_or_else(|| panic!("{statuses:?}"));
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("for all nodes"),
        "{}",
        r.body
    );
    let node = cc.get_json(&format!("/api/nodes/{id}"));
    assert!(
        !node["summary"]["attention"].to_string().contains("budget."),
        "not the node's fault: {node:#}"
    );
}
