//! The attention model end to end with the real binary: staleness on the policy's timings,
//! flap damping, silences and acknowledgements, `attention` events (logged and on `/events`),
//! and restarts that neither hide dead nodes nor raise a storm.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vaultmesh_testkit::sse::SseClient;
use vaultmesh_testkit::{CommandCenter, heartbeat_json, wait_for};

const A: &str = "a0000000-0000-4000-8000-000000000001";
const B: &str = "b0000000-0000-4000-8000-000000000002";

/// A policy directory with one profile, `Test`, holding `toml`.
fn policies(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Test.toml"), toml).unwrap();
    dir
}

fn start(dir: &Path, extra: &[&str]) -> CommandCenter {
    let mut args = vec![
        "--policy-dir",
        dir.to_str().unwrap(),
        "--attention-tick",
        "100ms",
    ];
    args.extend_from_slice(extra);
    CommandCenter::start_with(&args)
}

fn heartbeat(cc: &CommandCenter, node: &str, disk_used: u64) {
    let mut hb = heartbeat_json(node, &format!("host-{}", &node[..1]), 1);
    hb["os_profile"] = json!("Test");
    hb["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    hb["metrics"]["disks"][0]["used_bytes"] = json!(disk_used);
    let r = cc.post_json("/api/agent/heartbeat", &hb);
    assert_eq!(r.status, 200, "{}", r.body);
}

fn attention(cc: &CommandCenter, node: &str) -> Value {
    cc.get_json(&format!("/api/nodes/{node}"))["summary"]["attention"].clone()
}

fn level(cc: &CommandCenter, node: &str) -> String {
    attention(cc, node)["level"].as_str().unwrap().to_string()
}

fn wait_level(cc: &CommandCenter, node: &str, want: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    wait_for(within, || (level(cc, node) == want).then_some(())).unwrap_or_else(|| {
        panic!(
            "{node} did not reach {want} within {within:?}: {}",
            attention(cc, node)
        )
    });
    t0.elapsed()
}

/// `attention` events of `node`, oldest first, as (previous, level).
fn transitions(cc: &CommandCenter, node: &str) -> Vec<(String, String)> {
    let events = cc.get_json(&format!(
        "/api/events?kind=attention&node_id={node}&order=oldest&limit=1000"
    ));
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["body"]["level"] != e["body"]["previous"])
        .map(|e| {
            (
                e["body"]["previous"].as_str().unwrap().to_string(),
                e["body"]["level"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_silent_node_goes_attn_then_crit_on_the_policy_timings_and_back_to_ok() {
    let dir = policies("[attention]\nstale_after = \"1s\"\ncritical_after = \"2500ms\"\n");
    let cc = start(dir.path(), &[]);
    let sse = SseClient::connect(&format!("{}/events", cc.url), None);
    let t0 = Instant::now();
    heartbeat(&cc, A, 10);
    wait_level(&cc, A, "ok", Duration::from_secs(2));

    wait_level(&cc, A, "attn", Duration::from_secs(5));
    let attn_at = t0.elapsed();
    assert!(
        attn_at >= Duration::from_millis(1000),
        "ATTN too early: {attn_at:?}"
    );
    let reasons = attention(&cc, A)["reasons"].clone();
    assert_eq!(reasons[0]["rule"], "stale", "{reasons}");
    assert!(
        reasons[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("no heartbeat for")
    );

    wait_level(&cc, A, "crit", Duration::from_secs(5));
    let crit_at = t0.elapsed();
    assert!(
        crit_at >= Duration::from_millis(2500),
        "CRIT too early: {crit_at:?}"
    );
    assert!(
        crit_at < Duration::from_millis(4000),
        "CRIT too late: {crit_at:?}"
    );

    heartbeat(&cc, A, 10);
    wait_level(&cc, A, "ok", Duration::from_secs(2));
    assert!(attention(&cc, A)["reasons"].as_array().unwrap().is_empty());

    // The level changes in memory first and its event is logged right after: wait for it.
    let want: Vec<(String, String)> = [("ok", "attn"), ("attn", "crit"), ("crit", "ok")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let logged = wait_for(Duration::from_secs(2), || {
        let t = transitions(&cc, A);
        (t.len() >= want.len()).then_some(t)
    })
    .unwrap_or_else(|| transitions(&cc, A));
    assert_eq!(logged, want, "every level change is logged, in order");
    // ... and broadcast on /events.
    let mut seen = Vec::new();
    while let Some((name, _, data)) = sse.next_event(Duration::from_secs(2)) {
        if name == "attention" {
            let e: Value = serde_json::from_str(&data).unwrap();
            seen.push(e["body"]["level"].as_str().unwrap().to_string());
            if seen.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(seen, ["attn", "crit", "ok"]);
}

#[test]
fn flapping_is_damped_by_the_policy_counts() {
    let dir = policies(
        "[attention]\nraise_after = 2\nclear_after = 2\ndisk_attn_pct = 85.0\ndisk_crit_pct = 95.0\n",
    );
    let cc = start(dir.path(), &[]);
    heartbeat(&cc, A, 96);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(level(&cc, A), "ok", "one bad heartbeat is not enough");
    heartbeat(&cc, A, 96);
    wait_level(&cc, A, "crit", Duration::from_secs(2));
    let reasons = attention(&cc, A)["reasons"].clone();
    assert_eq!(reasons[0]["rule"], "threshold.disk");
    assert_eq!(reasons[0]["message"], "disk / is 96.0% full");
    heartbeat(&cc, A, 10);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        level(&cc, A),
        "crit",
        "one good heartbeat does not clear it"
    );
    heartbeat(&cc, A, 90);
    wait_level(&cc, A, "attn", Duration::from_secs(2));
    heartbeat(&cc, A, 10);
    heartbeat(&cc, A, 10);
    wait_level(&cc, A, "ok", Duration::from_secs(2));
}

#[test]
fn silences_and_acknowledgements_suppress_escalation_but_keep_the_reason_visible() {
    let dir = policies("[attention]\nstale_after = \"1s\"\ncritical_after = \"1s\"\n");
    let cc = start(dir.path(), &[]);
    heartbeat(&cc, A, 10);
    wait_level(&cc, A, "crit", Duration::from_secs(5));

    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "silence", "node_id": A, "author": "alice",
                "body": {"rule": "stale", "until": until, "text": "maintenance"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let silence_id = r.json()["id"].as_str().unwrap().to_string();
    wait_level(&cc, A, "ok", Duration::from_secs(2));
    let reason = attention(&cc, A)["reasons"][0].clone();
    assert_eq!(reason["rule"], "stale");
    assert_eq!(reason["level"], "crit", "the reason keeps its level");
    assert!(
        reason["suppressed_by"]
            .as_str()
            .unwrap()
            .starts_with("silenced by alice until "),
        "{reason}"
    );

    // Ending the silence early restores the level.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "resolve", "refs": [silence_id], "author": "alice"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    wait_level(&cc, A, "crit", Duration::from_secs(2));
    let again = cc.post_json(
        "/api/events",
        &json!({"kind": "resolve", "refs": [silence_id]}),
    );
    assert_eq!(again.status, 409, "{}", again.body);

    // A silence needs an end.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "silence", "node_id": A, "body": {"rule": "stale"}}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("until"), "{}", r.body);

    // An incident raises its node; an ack suppresses it; a resolve removes it.
    heartbeat(&cc, B, 10);
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "incident", "node_id": B, "body": {"title": "<b>disk</b> noise", "severity": "critical"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let incident = r.json()["id"].as_str().unwrap().to_string();
    let silence_b = cc.post_json(
        "/api/events",
        &json!({"kind": "silence", "node_id": B, "body": {"rule": "stale", "until": until}}),
    );
    assert_eq!(silence_b.status, 201);
    wait_level(&cc, B, "crit", Duration::from_secs(2));
    let reasons = attention(&cc, B)["reasons"].clone();
    assert!(
        reasons.as_array().unwrap().iter().any(|r| r["rule"]
            .as_str()
            .unwrap()
            .starts_with("incident.")
            && r["message"] == "open incident (critical): <b>disk</b> noise"),
        "{reasons}"
    );
    cc.post_json(
        "/api/events",
        &json!({"kind": "ack", "refs": [incident], "author": "bob"}),
    );
    wait_level(&cc, B, "ok", Duration::from_secs(2));
    let reasons = attention(&cc, B)["reasons"].clone();
    assert!(
        reasons
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["suppressed_by"] == "acknowledged by bob"),
        "{reasons}"
    );
    cc.post_json(
        "/api/events",
        &json!({"kind": "resolve", "refs": [incident]}),
    );
    wait_for(Duration::from_secs(2), || {
        let r = attention(&cc, B)["reasons"].clone();
        (!r.to_string().contains("incident.")).then_some(())
    })
    .expect("a resolved incident is no longer a reason");

    // The fleet attention view lists both nodes (B's silenced staleness included), worst first.
    let rows = wait_for(Duration::from_secs(3), || {
        let rows = cc.get_json("/api/attention");
        (rows.as_array().unwrap().len() == 2).then_some(rows)
    })
    .expect("both nodes are listed");
    assert_eq!(rows[0]["node_id"], A, "{rows}");
    assert_eq!(rows[1]["attention"]["level"], "ok", "{rows}");
    assert!(
        cc.get("/api/events?kind=attention").status == 200
            && cc.get("/api/events?kind=bogus").status == 400
    );
}

#[test]
fn an_until_resolved_silence_ends_when_its_reasons_clear() {
    let dir = policies("[attention]\nstale_after = \"1s\"\ncritical_after = \"1s\"\n");
    let cc = start(dir.path(), &[]);
    heartbeat(&cc, A, 10);
    wait_level(&cc, A, "crit", Duration::from_secs(5));
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "silence", "node_id": A, "body": {"until_resolved": true}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    wait_level(&cc, A, "ok", Duration::from_secs(2));
    let reason = &attention(&cc, A)["reasons"][0];
    assert!(
        reason["suppressed_by"]
            .as_str()
            .unwrap()
            .ends_with("until resolved")
    );
    heartbeat(&cc, A, 10);
    let ended = wait_for(Duration::from_secs(3), || {
        let events = cc.get_json("/api/events?kind=resolve");
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["refs"][0] == id.as_str())
            .cloned()
    })
    .expect("the silence ended once the node was fresh again");
    assert_eq!(ended["author"], "command-center");
    // The node going silent again is not silenced any more.
    wait_level(&cc, A, "crit", Duration::from_secs(5));

    // A silence set ahead of time (nothing to hold back yet) waits for its reasons.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "silence", "node_id": B, "body": {"until_resolved": true, "text": "maintenance"}}),
    );
    assert_eq!(r.status, 422, "B is not known yet: {}", r.body);
    heartbeat(&cc, B, 10);
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "silence", "node_id": B, "body": {"until_resolved": true, "text": "maintenance"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(600));
    wait_for(Duration::from_secs(5), || {
        let a = attention(&cc, B);
        (a["reasons"][0]["rule"] == "stale").then_some(())
    })
    .expect("B goes stale");
    assert_eq!(
        level(&cc, B),
        "ok",
        "held back by the silence set beforehand"
    );
    let ended = cc.get_json("/api/events?kind=resolve");
    assert!(
        !ended.to_string().contains(&id),
        "the silence did not end before its reasons appeared"
    );
}

#[test]
fn a_restart_keeps_levels_without_hiding_dead_nodes_or_raising_a_storm() {
    let dir = policies("[attention]\nstale_after = \"2s\"\ncritical_after = \"3s\"\n");
    let mut cc = start(dir.path(), &["--restart-grace", "3s"]);
    heartbeat(&cc, A, 10);
    heartbeat(&cc, B, 10);
    // B dies; A stays alive until the Command Center goes down.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(3500) {
        heartbeat(&cc, A, 10);
        std::thread::sleep(Duration::from_millis(400));
    }
    wait_level(&cc, B, "crit", Duration::from_secs(3));
    assert_eq!(level(&cc, A), "ok");
    let before_a = transitions(&cc, A);
    let before_b = transitions(&cc, B);

    // Down for longer than critical_after and than the grace period: every node's last_seen
    // is now old.
    cc.kill9();
    std::thread::sleep(Duration::from_millis(6500));
    cc.restart();
    assert_eq!(
        level(&cc, B),
        "crit",
        "a dead node is not hidden by the restart"
    );
    assert_eq!(
        level(&cc, A),
        "ok",
        "a live node is not raised by the restart: {}",
        attention(&cc, A)
    );
    // A reports within the grace period: no event at all.
    std::thread::sleep(Duration::from_millis(800));
    heartbeat(&cc, A, 10);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(level(&cc, A), "ok");
    assert_eq!(transitions(&cc, A), before_a, "no storm: A logged nothing");
    assert_eq!(
        transitions(&cc, B),
        before_b,
        "B's unchanged level is not logged again"
    );

    // A that stays silent past the grace period is raised after all.
    wait_level(&cc, A, "crit", Duration::from_secs(10));
}
