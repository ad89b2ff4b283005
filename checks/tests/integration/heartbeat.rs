//! The heartbeat the real checks make on a typical node: the example configuration
//! (`docs/agent.example.toml`) on a healthy host (a fake systemd on a private bus, a fake
//! cloudflared, a clean scan fixture; this machine's own load, memory and disks).

use std::path::Path;

use uuid::Uuid;
use vaultmesh_agent_core::CheckContext;
use vaultmesh_agent_core::config::AgentConfig;
use vaultmesh_agent_core::heartbeat::HeartbeatBuilder;
use vaultmesh_agent_core::registry;
use vaultmesh_agent_core::scheduler::Scheduler;
use vaultmesh_proto::NodeHeartbeat;
use vaultmesh_testkit::host::{HealthyHost, set_line};
use vaultmesh_testkit::workspace_root;

/// One round of every check the example enables, built into a heartbeat as the agent does.
async fn typical_heartbeat() -> NodeHeartbeat {
    let example =
        std::fs::read_to_string(workspace_root().join("docs/agent.example.toml")).unwrap();
    let host = HealthyHost::for_config(&example);
    let text = host.point(&set_line(&example, "cc_url", "http://127.0.0.1:1"));
    let text = text.replace(
        "[checks.systemd]\n",
        &format!("[checks.systemd]\nbus_address = {:?}\n", host.bus_address()),
    );
    let config = AgentConfig::from_toml_with(Path::new("agent.toml"), &text, |_| None).unwrap();
    let node = Uuid::from_u128(7);
    let ctx = CheckContext::new(node, "/var/lib/vaultmesh");
    let scans = ctx.scans.clone();
    let scheduler = Scheduler::new(registry::configure(&config).unwrap(), ctx);
    scheduler.run_all_once().await;
    let builder = HeartbeatBuilder::new(
        node,
        "vault-node-01".into(),
        "DebianVault".into(),
        "/var/lib/vaultmesh".into(),
    );
    let mut hb = builder.build(scheduler.latest());
    hb.last_scan = scans.last_scan();
    hb
}

/// How many times `needle` occurs in `haystack`.
fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typical_heartbeat_carries_each_measurement_once() {
    let hb = typical_heartbeat().await;
    let json = serde_json::to_string(&hb).unwrap();
    eprintln!("a typical node's heartbeat: {} bytes", json.len());

    // Every typed field is filled, by the check that owns it.
    let m = hb.metrics.as_ref().expect("metrics");
    assert!(m.load.is_some() && m.cpu_count.is_some(), "{json}");
    assert!(
        m.mem_total_bytes.is_some() && m.swap_used_bytes.is_some(),
        "{json}"
    );
    assert!(!m.disks.is_empty(), "{json}");
    assert!(m.cpu.is_some(), "{json}");
    assert!(hb.cloudflare_ok && hb.services_ok, "{json}");

    // ... and is on the wire once: not again in the checks' details or metrics.
    for key in [
        "\"disks\":",
        "\"load\":",
        "\"cpu_count\":",
        "\"mem_total_bytes\":",
        "\"mem_used_bytes\":",
        "\"swap_total_bytes\":",
        "\"swap_used_bytes\":",
        "\"cpu\":",
        "\"iowait_pct\":",
        "\"steal_pct\":",
    ] {
        assert_eq!(occurrences(&json, key), 1, "{key} in {json}");
    }
    // Interfaces and disks this machine may lack (a container): at most once each.
    for key in ["\"net\":", "\"diskio\":"] {
        assert!(occurrences(&json, key) <= 1, "{key} in {json}");
    }
    for n in &m.net {
        let name = format!(
            "\"interface\":{}",
            serde_json::to_string(&n.interface).unwrap()
        );
        assert_eq!(occurrences(&json, &name), 1, "{name} in {json}");
    }
    for d in &m.diskio {
        let name = format!("\"device\":{}", serde_json::to_string(&d.device).unwrap());
        assert_eq!(occurrences(&json, &name), 1, "{name} in {json}");
    }
    for d in &m.disks {
        let mount = format!("\"mount\":{}", serde_json::to_string(&d.mount).unwrap());
        assert_eq!(occurrences(&json, &mount), 1, "{mount} in {json}");
    }
    for c in &hb.checks {
        if ["disk", "load", "memory", "cpu", "net", "diskio"].contains(&c.name.as_str()) {
            assert!(c.details.is_null(), "{} repeats its sample: {json}", c.name);
        }
        for dup in ["load1", "load5", "load15", "cpu_count"] {
            assert!(!c.metrics.contains_key(dup), "{}.{dup}: {json}", c.name);
        }
    }
    // What is not in a typed field stays in the details: the units systemd saw, the tunnel's
    // connector.
    let detail = |name: &str| {
        hb.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.details.clone())
            .unwrap()
    };
    assert_eq!(detail("systemd")["units"].as_array().map(Vec::len), Some(2));
    assert!(detail("cloudflared")["connector_id"].is_string());
}
