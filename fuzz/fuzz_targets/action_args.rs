//! Every registered command action's argument parser (`prepare`: the typed, `deny_unknown_fields`
//! arguments and the checks against the node's configuration) on arbitrary JSON, and on the
//! arguments of arbitrary signed commands: a refusal or a ready action, never a panic. Nothing
//! runs (the prepared future is dropped unpolled).
#![no_main]
use std::sync::{Arc, OnceLock};

use vaultmesh_agent_core::action::{self, ActionContext};
use vaultmesh_agent_core::config::AgentConfig;
use vaultmesh_proto::command::SignedCommand;

// The built-in actions register themselves; link them.
use vaultmesh_checks as _;

/// A node that allows every action and restarts two units, configured as an operator would.
fn ctx() -> &'static ActionContext {
    static CTX: OnceLock<ActionContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let config = AgentConfig::from_toml_with(
            std::path::Path::new("fuzz.toml"),
            "[commands]\nallow = [\"agent.ping\", \"checks.run\", \"scan.sovereign\", \"service.status\", \"service.restart\"]\n\
             [commands.service]\nrestart_units = [\"cloudflared.service\", \"vaultmesh-*.service\"]\n\
             [checks.load]\nenabled = false\n",
            |_| None,
        )
        .expect("fuzz config");
        let checks = vaultmesh_agent_core::registry::configure(&config).expect("checks");
        ActionContext {
            check_ctx: vaultmesh_agent_core::CheckContext::new(uuid::Uuid::nil(), "/"),
            checks: Arc::new(checks),
            service: Arc::new(config.command_service),
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ctx = ctx();
    if let Ok(c) = serde_json::from_slice::<SignedCommand>(data) {
        if let Some(reg) = action::find(&c.command.action) {
            let _ = (reg.prepare)(ctx, c.command.args.clone());
        }
        return;
    }
    if let Ok(args) = serde_json::from_slice::<serde_json::Value>(data) {
        for reg in action::all() {
            let _ = (reg.prepare)(ctx, args.clone());
        }
    }
});
