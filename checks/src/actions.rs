//! Built-in command actions: `agent.ping`, `checks.run {name}`, `scan.sovereign`,
//! `service.status {unit}` and `service.restart {unit}` (the last two over D-Bus, never
//! `systemctl`).
//!
//! Each action's arguments are a typed struct that refuses unknown members, checked against
//! this node's configuration in `prepare` (a refusal is a signed `rejected` receipt; nothing
//! runs). Where the agent connects (systemd's bus) and what it may restart come from the
//! node's own `[commands.service]`, never from a command.

#[cfg(any(feature = "sovereign", feature = "systemd"))]
use std::time::Duration;

use serde::Deserialize;
use vaultmesh_agent_core::action::{
    ActionContext, ActionFuture, ActionOutcome, ActionRegistration, ArgsError, parse_args, quoted,
};
use vaultmesh_agent_core::commands::ACTION_TIMEOUT;
use vaultmesh_agent_core::registry::ConfiguredCheck;
use vaultmesh_agent_core::scheduler::run_isolated;

#[cfg(feature = "systemd")]
use crate::systemd::SystemdClient;

/// A scan may take its whole budget (at most 10 minutes, see `sovereign_scan`) and a little more.
#[cfg(feature = "sovereign")]
const SCAN_TIMEOUT: Duration = Duration::from_secs(11 * 60);

/// The longest check name `checks.run` takes (check names are short identifiers).
const CHECK_NAME_MAX: usize = 64;

/// `{}`: no arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// `{name}` of `checks.run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckArgs {
    name: String,
}

/// `{unit}` of `service.status` and `service.restart`.
#[cfg(feature = "systemd")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitArgs {
    unit: String,
}

/// The configured, enabled check named `name`.
fn enabled_check(ctx: &ActionContext, name: &str) -> Result<ConfiguredCheck, ArgsError> {
    let check = (name.len() <= CHECK_NAME_MAX)
        .then(|| ctx.checks.iter().find(|c| c.name() == name))
        .flatten()
        .ok_or_else(|| ArgsError(format!("this node has no check named {}", quoted(name))))?;
    if !check.settings.enabled {
        return Err(ArgsError(format!(
            "check {name} is disabled in this node's configuration"
        )));
    }
    Ok(check.clone())
}

fn ping(_ctx: &ActionContext, args: serde_json::Value) -> Result<ActionFuture, ArgsError> {
    let NoArgs {} = parse_args(args)?;
    Ok(Box::pin(async move {
        ActionOutcome::ok(format!(
            "pong from vaultmesh-node-agent {}",
            vaultmesh_agent_core::AGENT_VERSION
        ))
    }))
}

fn checks_run(ctx: &ActionContext, args: serde_json::Value) -> Result<ActionFuture, ArgsError> {
    let a: CheckArgs = parse_args(args)?;
    let check = enabled_check(ctx, &a.name)?;
    let check_ctx = ctx.check_ctx.clone();
    Ok(Box::pin(async move {
        // The result with what it measured for the heartbeat (`contributes`), as
        // `checks run --json` prints it.
        let run = run_isolated(&check, &check_ctx).await;
        ActionOutcome::ok(serde_json::to_string(&run).unwrap_or_default())
    }))
}

#[cfg(feature = "sovereign")]
/// Runs the `sovereign_scan` check now. Its report goes to the scan outbox (and from there to
/// `POST /api/agent/scans`); the receipt carries the scan id and the counts.
fn scan_sovereign(ctx: &ActionContext, args: serde_json::Value) -> Result<ActionFuture, ArgsError> {
    let NoArgs {} = parse_args(args)?;
    let check = enabled_check(ctx, "sovereign_scan")?;
    let check_ctx = ctx.check_ctx.clone();
    Ok(Box::pin(async move {
        let result = run_isolated(&check, &check_ctx).await.result;
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
    }))
}

#[cfg(feature = "systemd")]
/// Reads `{unit}` and checks it is a unit name; `may` says whether this node lets the action
/// touch it. The future connects to systemd at `[commands.service] bus_address` (or the
/// system bus) and runs `op`.
fn on_unit<F, Fut>(
    ctx: &ActionContext,
    args: serde_json::Value,
    may: impl FnOnce(&str) -> Result<(), ArgsError>,
    op: F,
) -> Result<ActionFuture, ArgsError>
where
    F: FnOnce(SystemdClient, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ActionOutcome> + Send,
{
    let a: UnitArgs = parse_args(args)?;
    if !vaultmesh_agent_core::action::is_unit_name(&a.unit) {
        return Err(ArgsError(format!("{} is not a unit name", quoted(&a.unit))));
    }
    may(&a.unit)?;
    let bus = ctx.service.bus_address.clone();
    Ok(Box::pin(async move {
        match SystemdClient::connect(bus.as_deref(), Duration::from_secs(5)).await {
            Ok(c) => op(c, a.unit).await,
            Err(e) => ActionOutcome::failed(e.to_string()),
        }
    }))
}

#[cfg(feature = "systemd")]
fn service_status(ctx: &ActionContext, args: serde_json::Value) -> Result<ActionFuture, ArgsError> {
    on_unit(
        ctx,
        args,
        |_| Ok(()),
        |c, unit| async move {
            match c.unit_state(&unit).await {
                Ok(s) => ActionOutcome::ok(serde_json::to_string(&s).unwrap_or_default()),
                Err(e) => ActionOutcome::failed(e.to_string()),
            }
        },
    )
}

/// Whether `[commands.service] restart_units` entry `pattern` names `unit`: the name itself, or
/// a `*`/`?` pattern that matches it. A template's instance (`NAME@INSTANCE.service`: the
/// instance is an argument to the unit's program) matches only a pattern that has an `@` of
/// its own, so `*.service` never lets a command restart `modprobe@anything.service`.
#[cfg(feature = "systemd")]
fn restart_listed(pattern: &str, unit: &str) -> bool {
    let instance_ok = !unit.contains('@') || pattern.contains('@');
    pattern == unit || (instance_ok && crate::systemd::glob_match(pattern, unit))
}

#[cfg(feature = "systemd")]
fn service_restart(
    ctx: &ActionContext,
    args: serde_json::Value,
) -> Result<ActionFuture, ArgsError> {
    let may = |unit: &str| {
        if ctx
            .service
            .restart_units
            .iter()
            .any(|p| restart_listed(p, unit))
        {
            Ok(())
        } else {
            Err(ArgsError(format!(
                "unit {} is not in this node's [commands.service] restart_units",
                quoted(unit)
            )))
        }
    };
    on_unit(ctx, args, may, |c, unit| async move {
        match c.restart_unit(&unit).await {
            Ok(job) => ActionOutcome::ok(format!("restart of {unit} queued as job {job}")),
            Err(e) => ActionOutcome::failed(e.to_string()),
        }
    })
}

inventory::submit! { ActionRegistration { name: "agent.ping", args: "{}", timeout: ACTION_TIMEOUT, description: "Answer pong", prepare: ping } }
inventory::submit! { ActionRegistration { name: "checks.run", args: "{name: string}", timeout: ACTION_TIMEOUT, description: "Run one configured, enabled check now", prepare: checks_run } }
#[cfg(feature = "sovereign")]
inventory::submit! { ActionRegistration { name: "scan.sovereign", args: "{}", timeout: SCAN_TIMEOUT, description: "Run the sovereign security scan now and send its report", prepare: scan_sovereign } }
#[cfg(feature = "systemd")]
inventory::submit! { ActionRegistration { name: "service.status", args: "{unit: string}", timeout: ACTION_TIMEOUT, description: "A systemd unit's state over D-Bus", prepare: service_status } }
#[cfg(feature = "systemd")]
inventory::submit! { ActionRegistration { name: "service.restart", args: "{unit: string}", timeout: ACTION_TIMEOUT, description: "Restart a unit in [commands.service] restart_units over D-Bus", prepare: service_restart } }
