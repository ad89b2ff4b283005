//! Helpers shared by the check tests: build one check from a TOML table, run it the way the
//! scheduler does, and see what it contributes to a heartbeat.

use std::path::Path;

use chrono::Utc;
use uuid::Uuid;
use vaultmesh_agent_core::config::AgentConfig;
use vaultmesh_agent_core::registry::{self, ConfiguredCheck};
use vaultmesh_agent_core::scheduler::run_isolated;
use vaultmesh_agent_core::{CheckContext, CheckRun};
use vaultmesh_proto::NodeHeartbeat;

/// The check `name`, configured from the body of its `[checks.<name>]` table.
pub fn configured(name: &str, table: &str) -> ConfiguredCheck {
    let text = format!("[checks.{name}]\n{table}");
    let config = AgentConfig::from_toml_with(Path::new("test.toml"), &text, |_| None).unwrap();
    registry::configure(&config)
        .unwrap()
        .into_iter()
        .find(|c| c.name() == name)
        .unwrap()
}

/// One run with the scheduler's timeout and panic isolation.
pub async fn run(check: &ConfiguredCheck) -> CheckRun {
    run_isolated(check, &CheckContext::new(Uuid::nil(), "/")).await
}

/// A seed-only heartbeat (tunnel down, services up) after `run` contributed to it.
pub fn heartbeat_after(run: &CheckRun) -> NodeHeartbeat {
    let mut hb: NodeHeartbeat = serde_json::from_value(serde_json::json!({
        "node_id": Uuid::nil(), "hostname": "h", "os_profile": "ArchVault", "cloudflare_ok": false,
        "services_ok": true, "vaultmesh_root": "/", "timestamp": Utc::now(),
    }))
    .unwrap();
    run.contributes.clone().apply(&mut hb);
    hb
}
