//! `GET /metrics` on the real server with a real agent: every family the operator needs moves
//! when its event happens, and `promtool check metrics` (Debian package `prometheus`) accepts
//! the exposition.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use vaultmesh_testkit::sse::SseClient;
use vaultmesh_testkit::{CommandCenter, NodeAgent, heartbeat_json, metric, wait_for};

const NODE: &str = "550e8400-e29b-41d4-a716-446655440000";

fn scrape(cc: &CommandCenter) -> String {
    let r = cc.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Runs `promtool check metrics` on `exposition`; panics with its complaints.
fn promtool_accepts(exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool is missing: sudo apt-get install -y prometheus (scripts/test installs it)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_follow_ingest_rejections_streams_commands_and_replay() {
    let (mut cc, _keydir, public) = vaultmesh_testkit::commanding_center(&[]);

    let fresh = scrape(&cc);
    promtool_accepts(&fresh);
    assert_eq!(
        metric(&fresh, "vaultmesh_heartbeats_ingested_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(&fresh, "vaultmesh_build_info{version=\"0.1.0\"}"),
        Some(1.0)
    );

    // One accepted heartbeat, one invalid, one unsigned.
    let ok = cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "vault-01", 1));
    assert_eq!(ok.status, 200, "{}", ok.body);
    let mut bad = heartbeat_json(NODE, "vault-01", 2);
    bad["timestamp"] = json!("yesterday");
    assert_eq!(cc.post_json("/api/agent/heartbeat", &bad).status, 422);
    let unsigned = cc.unsigned_request(
        "POST",
        "/api/agent/heartbeat",
        Some("application/json"),
        heartbeat_json(NODE, "vault-01", 3).to_string(),
    );
    assert_eq!(unsigned.status, 401);
    assert_eq!(cc.get("/api/nodes/not-a-uuid").status, 400);

    // A real agent, a command and its receipt.
    let agent = NodeAgent::new(&cc.url)
        .env("VAULTMESH_CC_PUBKEY", &public)
        .env("VAULTMESH_OS_PROFILE", "ArchVault")
        .env("VAULTMESH_INTERVAL", "1s");
    let _child = agent.spawn(&["run"]);
    let agent_node = wait_for(Duration::from_secs(20), || {
        cc.get_json("/api/nodes")
            .as_array()?
            .iter()
            .find(|n| n["node_id"] != NODE)?["node_id"]
            .as_str()
            .map(str::to_string)
    })
    .expect("the agent reported");
    std::thread::sleep(Duration::from_millis(500));
    let issued = cc.post_json(
        "/api/commands",
        &json!({"node_id": agent_node, "action": "agent.ping", "args": {}}),
    );
    assert_eq!(issued.status, 201, "{}", issued.body);

    let sse = SseClient::connect(&format!("{}/events", cc.url), None);
    assert_eq!(sse.status, 200);

    let m = wait_for(Duration::from_secs(10), || {
        let m = scrape(&cc);
        (metric(&m, "vaultmesh_command_receipts_total{status=\"ok\"}") == Some(1.0)).then_some(m)
    })
    .expect("the receipt is counted");
    promtool_accepts(&m);
    assert!(metric(&m, "vaultmesh_heartbeats_ingested_total").unwrap() >= 2.0);
    assert_eq!(
        metric(
            &m,
            "vaultmesh_requests_rejected_total{reason=\"invalid\",route=\"/api/agent/heartbeat\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "vaultmesh_requests_rejected_total{reason=\"unauthorized\",route=\"/api/agent/heartbeat\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "vaultmesh_requests_rejected_total{reason=\"bad_request\",route=\"/api/nodes/{id}\"}"
        ),
        Some(1.0),
        "rejections are labelled by route template, never the raw path"
    );
    assert_eq!(
        metric(&m, "vaultmesh_commands_issued_total{by=\"admin\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "vaultmesh_sse_clients"), Some(1.0));
    assert_eq!(
        metric(&m, "vaultmesh_leader"),
        Some(1.0),
        "the file store always leads"
    );
    let levels: f64 = ["ok", "attn", "crit"]
        .iter()
        .map(|l| metric(&m, &format!("vaultmesh_nodes{{level=\"{l}\"}}")).unwrap())
        .sum();
    assert_eq!(levels, 2.0, "every node is counted at one level");
    assert!(metric(&m, "vaultmesh_log_append_seconds_count{log=\"heartbeats\"}").unwrap() >= 2.0);
    assert!(metric(&m, "vaultmesh_log_append_seconds_count{log=\"commands\"}").unwrap() >= 2.0);

    drop(sse);
    wait_for(Duration::from_secs(10), || {
        (metric(&scrape(&cc), "vaultmesh_sse_clients") == Some(0.0)).then_some(())
    })
    .expect("a closed stream is no longer counted");

    cc.restart();
    let after = scrape(&cc);
    assert!(
        metric(&after, "vaultmesh_replay_lines").unwrap() >= 3.0,
        "replayed lines are reported: {after}"
    );
    assert!(metric(&after, "vaultmesh_replay_seconds").unwrap() > 0.0);
}

/// The samples of one family in an exposition.
fn samples<'a>(exposition: &'a str, family: &str) -> Vec<&'a str> {
    let prefix = format!("{family}{{");
    exposition
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

#[test]
fn every_node_has_its_series_promtool_accepts_a_thousand_and_a_decommissioned_node_has_none() {
    const NODES: usize = 1000;
    let cc = CommandCenter::start();
    let ids: Vec<String> = (0..NODES)
        .map(|i| uuid::Uuid::from_u128(0x5eed_0000 + i as u128).to_string())
        .collect();
    std::thread::scope(|s| {
        for chunk in ids.chunks(NODES / 8) {
            let cc = &cc;
            s.spawn(move || {
                for id in chunk {
                    let mut hb = heartbeat_json(id, &format!("node-{}", &id[24..]), 1);
                    hb["labels"] = json!({"site": "fra1", "rack-no.": "r1:a"});
                    hb["uptime_s"] = json!(3600);
                    let r = cc.post_json("/api/agent/heartbeat", &hb);
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            });
        }
    });
    let m = scrape(&cc);
    promtool_accepts(&m);
    let info = samples(&m, "vaultmesh_node_info");
    assert_eq!(info.len(), NODES, "one info series per node");
    let one = &ids[0];
    let base = format!(
        "node_id=\"{one}\",hostname=\"node-{}\",profile=\"ArchVault\",label_rack_no_=\"r1:a\",label_site=\"fra1\"",
        &one[24..]
    );
    for line in [
        format!("vaultmesh_node_attention_level{{{base}}} 0"),
        format!("vaultmesh_node_load{{{base},window=\"1m\"}} 0.5"),
        format!("vaultmesh_node_memory_used_bytes{{{base}}} 250"),
        format!("vaultmesh_node_filesystem_used_bytes{{{base},mount=\"/\",fs=\"ext4\"}} 42"),
        format!("vaultmesh_node_check_status{{{base},check=\"disk\"}} 0"),
        format!("vaultmesh_node_uptime_seconds{{{base}}} 3600"),
        format!("vaultmesh_node_services{{{base},state=\"up\"}} 1"),
    ] {
        assert!(m.contains(&line), "{line} not in the scrape");
    }
    let age = samples(&m, "vaultmesh_node_last_seen_age_seconds");
    assert_eq!(age.len(), NODES);
    assert!(
        age.iter()
            .all(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() < 120.0),
        "every node was heard from just now"
    );

    // A decommissioned node leaves every per-node family; the others stay.
    let r = cc.request(
        "POST",
        &format!("/api/nodes/{one}/decommission"),
        Some("application/json"),
        serde_json::to_vec(&json!({"reason": "retired"})).unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let m = scrape(&cc);
    promtool_accepts(&m);
    assert!(
        !m.contains(one.as_str()),
        "no series of the decommissioned node"
    );
    assert_eq!(samples(&m, "vaultmesh_node_info").len(), NODES - 1);
}
