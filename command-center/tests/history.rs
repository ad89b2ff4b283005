//! `GET /api/nodes/{id}/history` over the real binary: the tiers a range reads, bounded points,
//! refusals of bad ranges and metrics, and the same answer after a kill -9.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use vaultmesh_testkit::{CommandCenter, heartbeat_json};

const NODE: &str = "550e8400-e29b-41d4-a716-446655440000";

fn beat(cc: &CommandCenter, seq: u64, load: f64) {
    let mut hb = heartbeat_json(NODE, "vault-node-01", seq);
    hb["metrics"]["load"] = serde_json::json!([load, 0.2, 0.1]);
    let r = cc.post_json("/api/agent/heartbeat", &hb);
    assert_eq!(r.status, 200, "{}", r.body);
}

fn series<'a>(h: &'a serde_json::Value, metric: &str) -> &'a Vec<serde_json::Value> {
    h["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} in {h}"))["points"]
        .as_array()
        .unwrap()
}

#[test]
fn a_node_history_answers_each_range_from_its_tier_and_survives_a_kill() {
    let mut cc = CommandCenter::start();
    for (i, load) in [0.5, 1.5, 4.0].into_iter().enumerate() {
        beat(&cc, i as u64, load);
    }
    let hour = cc.get_json(&format!("/api/nodes/{NODE}/history?range=1h"));
    assert_eq!(hour["tier"], "raw");
    assert_eq!(hour["resolution_secs"], 15);
    assert_eq!(hour["range"], "1h");
    let metrics: Vec<&str> = hour["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"].as_str().unwrap())
        .collect();
    assert_eq!(
        metrics,
        [
            "load1",
            "load5",
            "load15",
            "mem_used_pct",
            "checks_ok",
            "checks_warn",
            "checks_crit",
            "checks_unknown",
            "disk_used_pct:/"
        ]
    );
    let units: Vec<&str> = hour["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units[0], "load");
    assert_eq!(units[3], "percent");
    assert_eq!(units[4], "count");
    // Three heartbeats in under 15 s may share a point: every sample is in, the max is the max.
    let load: &Vec<_> = series(&hour, "load1");
    let n: u64 = load.iter().map(|p| p["n"].as_u64().unwrap()).sum();
    assert_eq!(n, 3);
    let max = load
        .iter()
        .map(|p| p["max"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(max, 4.0, "no clipping: {load:?}");

    let day = cc.get_json(&format!(
        "/api/nodes/{NODE}/history?range=24h&metrics=load1"
    ));
    assert_eq!(day["tier"], "5m");
    assert_eq!(day["resolution_secs"], 300);
    assert_eq!(day["series"].as_array().unwrap().len(), 1);
    let point = &series(&day, "load1")[0];
    assert_eq!(
        (point["min"].as_f64(), point["max"].as_f64()),
        (Some(0.5), Some(4.0))
    );
    assert_eq!(point["avg"].as_f64(), Some(2.0));
    for range in ["7d", "30d", "1y"] {
        let h = cc.get_json(&format!("/api/nodes/{NODE}/history?range={range}"));
        assert_eq!(h["tier"], "1h", "{range}");
        assert_eq!(series(&h, "load1")[0]["n"], 3, "{range}: the open hour");
    }

    cc.kill9();
    cc.restart();
    let after = cc.get_json(&format!("/api/nodes/{NODE}/history?range=1h"));
    assert_eq!(after["series"], hour["series"], "rebuilt from the log");
}

#[test]
fn bad_history_queries_are_refused_with_what_is_wrong() {
    let cc = CommandCenter::start();
    beat(&cc, 1, 0.5);
    let cases = [
        ("range=24hr", 400, "did you mean \"24h\""),
        ("range=2h", 400, "ranges are 1h, 24h, 7d, 30d, 1y"),
        (
            "metrics=load1,mem_used",
            400,
            "did you mean \"mem_used_pct\"",
        ),
        ("metrics=disk_used_pct:", 400, "unknown metric"),
        ("rang=1h", 400, "unknown field"),
    ];
    for (query, status, contains) in cases {
        let r = cc.get(&format!("/api/nodes/{NODE}/history?{query}"));
        assert_eq!(r.status, status, "{query}: {}", r.body);
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(err.contains(contains), "{query}: {err}");
    }
    let r = cc.get("/api/nodes/00000000-0000-0000-0000-000000000001/history");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = cc.get("/api/nodes/not-a-uuid/history");
    assert_eq!(r.status, 400, "{}", r.body);
}
