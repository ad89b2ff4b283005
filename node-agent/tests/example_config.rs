//! `docs/agent.example.toml` agrees with the agent's defaults and with the shipped policies.
//!
//! The example marks the few values that are this node's own with `# per node:` (the Command
//! Center's address, the OS profile, the units the profile requires); every other value it shows
//! must be the default, which is checked by loading the example without those lines and
//! comparing the resolved configuration, and every check built from it, with an empty file.
//! Then a healthy host set up from the example — the real agent with the example as its config,
//! a fake systemd on a private bus running the units it lists, a fake cloudflared with its
//! tunnel up, a clean scan fixture — reports to a real Command Center with the shipped policies
//! and is OK under its profile.
//!
//! What the healthy-host test substitutes in the example (nothing else changes): the
//! placeholder `cc_url` and cloudflared's `metrics_url` (a port on 127.0.0.1), and the scan's
//! `root` and `proc` (a fixture tree, so the scan judges a known host, not the test machine).
//! The systemd check finds the private bus through `DBUS_SYSTEM_BUS_ADDRESS`, as on a host, and
//! `VAULTMESH_INTERVAL=1s` makes heartbeats come fast enough for flap damping to have raised
//! whatever it would raise. The test machine's own load, memory and disks are real: reasons
//! about them are reported, not held against the example.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use vaultmesh_agent_core::config::AgentConfig;
use vaultmesh_testkit::host::{HealthyHost, assert_ok_but_for_this_machine, set_line};
use vaultmesh_testkit::{
    CommandCenter, NodeAgent, keygen, shipped_policies, wait_for, workspace_root,
};

// The checks register themselves; a test binary must link them too.
use vaultmesh_checks as _;

/// The marker of a value that is the node's own, not a default.
const PER_NODE: &str = "# per node:";

/// The values the example marks as the node's own, as `table.key`.
const PER_NODE_KEYS: &[&str] = &["agent.cc_url", "agent.os_profile", "checks.systemd.units"];

fn example() -> String {
    std::fs::read_to_string(workspace_root().join("docs/agent.example.toml")).unwrap()
}

/// `table.key` of every `key = value` line holding `marker`, in order.
fn marked_keys(text: &str, marker: &str) -> Vec<String> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
        } else if !t.starts_with('#')
            && t.contains(marker)
            && let Some((key, _)) = t.split_once('=')
        {
            out.push(format!("{table}.{}", key.trim()));
        }
    }
    out
}

/// The configuration and every check as `text` resolves them, with no environment.
fn resolved(text: &str) -> (AgentConfig, Vec<String>) {
    let path = Path::new("/etc/vaultmesh/agent.toml");
    let mut config =
        AgentConfig::from_toml_with(path, text, |_| None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let checks = vaultmesh_agent_core::registry::configure(&config)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|c| format!("{}: {:?} {:?}", c.name(), c.settings, c.check))
        .collect();
    // Where the values came from is not a value.
    config.source = None;
    config.checks.clear();
    (config, checks)
}

#[test]
fn the_example_marks_exactly_the_per_node_values() {
    assert_eq!(marked_keys(&example(), PER_NODE), PER_NODE_KEYS);
}

#[test]
fn every_value_the_example_shows_is_the_default() {
    let text = example();
    let defaults_only: String = text
        .lines()
        .filter(|l| !l.contains(PER_NODE))
        .map(|l| format!("{l}\n"))
        .collect();
    let (config, checks) = resolved(&defaults_only);
    let (default_config, default_checks) = resolved("");
    assert_eq!(config, default_config, "[agent] or [commands] differ");
    for (shown, default) in checks.iter().zip(&default_checks) {
        assert_eq!(shown, default, "the example's value is not the default");
    }
    assert_eq!(checks.len(), default_checks.len());
    // The comparison sees a changed value: a sanity check of the method itself.
    let (changed, _) = resolved(&defaults_only.replace("interval = \"30s\"", "interval = \"31s\""));
    assert_ne!(changed, default_config);
    let (_, changed) = resolved(&defaults_only.replace("warn_pct = 85.0", "warn_pct = 84.0"));
    assert_ne!(changed, default_checks);
}

/// Each shipped policy's required services are named in the example, where an admin setting
/// up a node of that profile reads which units to list.
#[test]
fn the_example_names_the_units_every_shipped_policy_requires() {
    let text = example();
    for file in shipped_policies() {
        let policy: toml::Table = toml::from_str(
            &std::fs::read_to_string(workspace_root().join("policies").join(&file)).unwrap(),
        )
        .unwrap();
        let required = policy
            .get("services")
            .and_then(|s| s.get("required"))
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        let profile = file.trim_end_matches(".toml");
        for unit in required {
            let unit = unit.as_str().unwrap();
            assert!(
                text.lines()
                    .any(|l| l.contains(PER_NODE) && l.contains(&format!("\"{unit}\"")))
                    || text
                        .lines()
                        .any(|l| l.contains(profile) && l.contains(&format!("\"{unit}\""))),
                "{file} requires {unit}; docs/agent.example.toml does not name it for {profile}"
            );
        }
    }
}

#[test]
fn a_healthy_host_set_up_from_the_example_is_ok_under_its_profile() {
    let text = example();
    let example_config: toml::Table = toml::from_str(&text).unwrap();
    let profile = example_config["agent"]["os_profile"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        shipped_policies().contains(&format!("{profile}.toml")),
        "the example's profile {profile} has no shipped policy"
    );

    let host_keys = vaultmesh_testkit::TempDir::new().unwrap();
    // Flap damping waits this many bad heartbeats before raising (1 unless the policy says).
    let policy: toml::Table = toml::from_str(
        &std::fs::read_to_string(workspace_root().join(format!("policies/{profile}.toml")))
            .unwrap(),
    )
    .unwrap();
    let raise_after = policy
        .get("attention")
        .and_then(|a| a.get("raise_after"))
        .and_then(|r| r.as_integer())
        .unwrap_or(1) as usize;

    let host = HealthyHost::for_config(&text);
    let (key, public) = keygen(host_keys.path());
    let policies = workspace_root().join("policies");
    let cc = CommandCenter::start_with(&[
        "--policy-dir",
        policies.to_str().unwrap(),
        "--signing-key",
        &key,
        "--attention-tick",
        "100ms",
    ]);
    let config = host.point(&set_line(&text, "cc_url", &cc.url));
    let agent = NodeAgent::new(&cc.url)
        .env("DBUS_SYSTEM_BUS_ADDRESS", host.bus_address())
        .env("VAULTMESH_CC_PUBKEY", &public)
        .env("VAULTMESH_INTERVAL", "1s")
        .config(&config);
    let mut child = agent.spawn(&["run"]);

    // Every check has run (the scan too, once, at start) and attention has settled.
    let node = wait_for(Duration::from_secs(60), || {
        let nodes = cc.get_json("/api/nodes");
        let id = nodes.as_array()?.first()?["node_id"].as_str()?.to_string();
        let d = cc.get_json(&format!("/api/nodes/{id}"));
        let names: BTreeSet<&str> = d["latest"]["checks"]
            .as_array()?
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let all = ["cloudflared", "disk", "load", "memory", "systemd"]
            .iter()
            .all(|n| names.contains(n));
        let heartbeats = d["history"].as_array()?.len();
        (all && heartbeats >= raise_after + 2 && d["latest_scan"]["scan_id"].is_string())
            .then_some(d)
    })
    .unwrap_or_else(|| {
        panic!(
            "the node never reported every check and a scan: {:?}",
            child.wait_exit(Duration::ZERO)
        )
    });
    let id = node["summary"]["node_id"].as_str().unwrap().to_string();
    // One more attention tick, then judge.
    std::thread::sleep(Duration::from_millis(500));
    let detail = cc.get_json(&format!("/api/nodes/{id}"));
    assert_eq!(detail["summary"]["os_profile"], profile.as_str());
    assert_ok_but_for_this_machine(
        &detail,
        &format!("a host set up from the example ({profile})"),
    );
    // The systemd check saw every unit it lists, active; the scan found nothing that matters.
    let systemd = detail["latest"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "systemd")
        .unwrap();
    assert_eq!(systemd["status"], "ok", "{systemd}");
    let serious: Vec<&serde_json::Value> = detail["latest_scan"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !matches!(f["severity"].as_str(), Some("info" | "low")))
        .collect();
    assert!(serious.is_empty(), "{serious:?}");
}
