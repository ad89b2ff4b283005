//! The Grafana dashboard in `docs/grafana-dashboard.json`: every query names a metric the
//! Command Center exports — checked against a real scrape of a Command Center that took a
//! heartbeat carrying every measurement — and is valid PromQL (`promtool check rules`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};
use vaultmesh_testkit::{CommandCenter, heartbeat_json};

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every `expr` of every panel target, anywhere in the dashboard.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The `vaultmesh_*` metric names an expression mentions.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("vaultmesh_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// A heartbeat with every measurement the agent's checks can send.
fn full_heartbeat(node: &str) -> Value {
    let mut hb = heartbeat_json(node, "vault-full", 1);
    hb["uptime_s"] = json!(7200);
    hb["agent_version"] = json!("0.1.0");
    hb["labels"] = json!({"site": "fra1"});
    let m = &mut hb["metrics"];
    m["swap_total_bytes"] = json!(2000);
    m["swap_used_bytes"] = json!(100);
    m["cpu"] = json!({"busy_pct": 37.5, "user_pct": 20.0, "system_pct": 9.5, "iowait_pct": 6.0, "steal_pct": 2.0});
    m["net"] = json!([{"interface": "eth0", "rx_bytes_per_s": 1200.0, "tx_bytes_per_s": 800.0,
        "rx_errors_per_s": 0.0, "tx_errors_per_s": 0.5, "rx_drops_per_s": 0.25, "tx_drops_per_s": 0.0}]);
    m["diskio"] = json!([{"device": "vda", "read_bytes_per_s": 4096.0, "write_bytes_per_s": 8192.0,
        "read_iops": 1.0, "write_iops": 2.0, "busy_pct": 3.5}]);
    m["temperatures"] = json!([{"sensor": "coretemp", "label": "Package id 0", "celsius": 54.0, "crit_celsius": 100.0}]);
    m["updates"] = json!({"pending": 3, "security": 1, "reboot_required": true, "manager": "apt"});
    hb
}

#[test]
fn every_dashboard_query_names_an_exported_metric_and_is_valid_promql() {
    let d = dashboard();
    assert_eq!(d["uid"], "vaultmesh-fleet");
    let mut all = Vec::new();
    exprs(&d["panels"], &mut all);
    assert!(
        all.len() >= 25,
        "the dashboard has its panels: {}",
        all.len()
    );

    let cc = CommandCenter::start();
    let node = "6a1f0000-0000-4000-8000-000000000001";
    let r = cc.post_json("/api/agent/heartbeat", &full_heartbeat(node));
    assert_eq!(r.status, 200, "{}", r.body);
    let scrape = cc.get("/metrics");
    assert_eq!(scrape.status, 200);
    // Families with at least one sample in the scrape.
    let exported: BTreeSet<String> = scrape
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();

    let mut missing = BTreeSet::new();
    for e in &all {
        for name in metric_names(e) {
            if !exported.contains(&name) {
                missing.insert(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "dashboard queries name metrics the Command Center did not export: {missing:?}"
    );

    // The node variable lists hostnames from a family the CC exports, with that label.
    let var = &d["templating"]["list"][0];
    assert_eq!(var["name"], "node");
    let q = var["query"]["query"].as_str().unwrap();
    assert_eq!(q, "label_values(vaultmesh_node_info, hostname)");
    assert!(
        scrape
            .body
            .lines()
            .any(|l| l.starts_with("vaultmesh_node_info{") && l.contains("hostname=\"vault-full\"")),
        "vaultmesh_node_info carries hostname"
    );

    // Valid PromQL: each expression as a recording rule, Grafana's variables filled in.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in all.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$node", "vault-full");
        text.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    std::fs::write(&rules, text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect(
            "promtool is missing: sudo apt-get install -y prometheus (scripts/test installs it)",
        );
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            "topk(10, vaultmesh_node_load{window=\"5m\"} / on(node_id) group_left vaultmesh_node_cpus)"
        ),
        ["vaultmesh_node_load", "vaultmesh_node_cpus"]
    );
}
