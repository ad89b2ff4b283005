//! Built-in command actions: `agent.ping`, `checks.run {name}`, `scan.sovereign`,
//! `service.status {unit}` and `service.restart {unit}` (the last two over D-Bus, never
//! `systemctl`).

#[cfg(any(feature = "sovereign", feature = "systemd"))]
use std::time::Duration;

use serde::Deserialize;
use vaultmesh_agent_core::action::{
    ActionContext, ActionFuture, ActionOutcome, ActionRegistration,
};
use vaultmesh_agent_core::commands::ACTION_TIMEOUT;
use vaultmesh_agent_core::scheduler::run_isolated;

#[cfg(feature = "systemd")]
use crate::systemd::SystemdClient;

/// A scan may take its whole budget (at most 10 minutes, see `sovereign_scan`) and a little more.
#[cfg(feature = "sovereign")]
const SCAN_TIMEOUT: Duration = Duration::from_secs(11 * 60);

fn parse<T: for<'de> Deserialize<'de>>(args: serde_json::Value) -> Result<T, ActionOutcome> {
    serde_json::from_value(args).map_err(|e| ActionOutcome::failed(format!("bad arguments: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckArgs {
    name: String,
}

#[cfg(feature = "systemd")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitArgs {
    unit: String,
    /// D-Bus address instead of the system bus (tests).
    #[serde(default)]
    bus_address: Option<String>,
}

fn ping(_ctx: ActionContext, args: serde_json::Value) -> ActionFuture {
    Box::pin(async move {
        if let Err(e) = parse::<NoArgs>(args) {
            return e;
        }
        ActionOutcome::ok(format!(
            "pong from vaultmesh-node-agent {}",
            vaultmesh_agent_core::AGENT_VERSION
        ))
    })
}

fn checks_run(ctx: ActionContext, args: serde_json::Value) -> ActionFuture {
    Box::pin(async move {
        let a: CheckArgs = match parse(args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let Some(check) = ctx.checks.iter().find(|c| c.name() == a.name) else {
            return ActionOutcome::failed(format!("no check named {:?}", a.name));
        };
        let result = run_isolated(check, &ctx.check_ctx).await;
        ActionOutcome::ok(serde_json::to_string(&result).unwrap_or_default())
    })
}

#[cfg(feature = "sovereign")]
/// Runs the `sovereign_scan` check now. Its report goes to the scan outbox (and from there to
/// `POST /api/agent/scans`); the receipt carries the scan id and the counts.
fn scan_sovereign(ctx: ActionContext, args: serde_json::Value) -> ActionFuture {
    Box::pin(async move {
        if let Err(e) = parse::<NoArgs>(args) {
            return e;
        }
        let Some(check) = ctx.checks.iter().find(|c| c.name() == "sovereign_scan") else {
            return ActionOutcome::failed("this agent has no sovereign_scan check");
        };
        if !check.settings.enabled {
            return ActionOutcome::failed(
                "sovereign_scan is disabled in this agent's configuration",
            );
        }
        let result = run_isolated(check, &ctx.check_ctx).await;
        let summary = serde_json::json!({
            "status": result.status,
            "summary": result.summary,
            "scan_id": result.details.get("scan_id"),
            "counts": result.details.get("counts"),
        });
        if result.details.get("scan_id").is_none() {
            return ActionOutcome::failed(format!("scan did not complete: {}", result.summary));
        }
        ActionOutcome::ok(summary.to_string())
    })
}

#[cfg(feature = "systemd")]
fn unit_name_ok(unit: &str) -> bool {
    !unit.is_empty()
        && unit.len() <= 256
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:\\".contains(&b))
}

#[cfg(feature = "systemd")]
/// Parses `{unit}`, connects to systemd, and runs `op` on the unit.
async fn on_unit<F, Fut>(args: serde_json::Value, op: F) -> ActionOutcome
where
    F: FnOnce(SystemdClient, String) -> Fut,
    Fut: std::future::Future<Output = ActionOutcome>,
{
    let a: UnitArgs = match parse(args) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if !unit_name_ok(&a.unit) {
        return ActionOutcome::failed(format!("{:?} is not a unit name", a.unit));
    }
    match SystemdClient::connect(a.bus_address.as_deref(), Duration::from_secs(5)).await {
        Ok(c) => op(c, a.unit).await,
        Err(e) => ActionOutcome::failed(e.to_string()),
    }
}

#[cfg(feature = "systemd")]
fn service_status(_ctx: ActionContext, args: serde_json::Value) -> ActionFuture {
    Box::pin(on_unit(args, |c, unit| async move {
        match c.unit_state(&unit).await {
            Ok(s) => ActionOutcome::ok(serde_json::to_string(&s).unwrap_or_default()),
            Err(e) => ActionOutcome::failed(e.to_string()),
        }
    }))
}

#[cfg(feature = "systemd")]
fn service_restart(_ctx: ActionContext, args: serde_json::Value) -> ActionFuture {
    Box::pin(on_unit(args, |c, unit| async move {
        match c.restart_unit(&unit).await {
            Ok(job) => ActionOutcome::ok(format!("restart of {unit} queued as job {job}")),
            Err(e) => ActionOutcome::failed(e.to_string()),
        }
    }))
}

inventory::submit! { ActionRegistration { name: "agent.ping", timeout: ACTION_TIMEOUT, description: "Answer pong (no arguments)", run: ping } }
inventory::submit! { ActionRegistration { name: "checks.run", timeout: ACTION_TIMEOUT, description: "Run one configured check now: {name}", run: checks_run } }
#[cfg(feature = "sovereign")]
inventory::submit! { ActionRegistration { name: "scan.sovereign", timeout: SCAN_TIMEOUT, description: "Run the sovereign security scan now and send its report (no arguments)", run: scan_sovereign } }
#[cfg(feature = "systemd")]
inventory::submit! { ActionRegistration { name: "service.status", timeout: ACTION_TIMEOUT, description: "A systemd unit's state over D-Bus: {unit}", run: service_status } }
#[cfg(feature = "systemd")]
inventory::submit! { ActionRegistration { name: "service.restart", timeout: ACTION_TIMEOUT, description: "Restart a systemd unit over D-Bus: {unit}", run: service_restart } }
