//! The built-in command actions, run through the action registry against real peers: the
//! service actions reach a fake systemd on a private bus that this node's own
//! `[commands.service]` names, and every action refuses arguments it does not know.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;
use vaultmesh_agent_core::CheckContext;
use vaultmesh_agent_core::action::{self, ActionContext, ServiceSettings};
use vaultmesh_proto::command::ReceiptStatus;
use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};

use super::util::configured;

fn ctx(service: ServiceSettings) -> ActionContext {
    ActionContext {
        check_ctx: CheckContext::new(Uuid::nil(), "/"),
        checks: Arc::new(vec![
            configured("memory", ""),
            configured("load", "enabled = false\n"),
            // Configured, never run here: `prepare` only checks that it is enabled.
            configured("sovereign_scan", ""),
        ]),
        service: Arc::new(service),
    }
}

/// Prepares and runs `name`; `Err` is the refusal of its arguments.
async fn run(
    ctx: &ActionContext,
    name: &str,
    args: serde_json::Value,
) -> Result<action::ActionOutcome, String> {
    let run = (action::find(name).unwrap().prepare)(ctx, args).map_err(|e| e.0)?;
    Ok(run.await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_actions_talk_to_the_locally_configured_systemd_over_dbus() {
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("cloudflared.service", "failed", "failed")],
    );
    let ctx = ctx(ServiceSettings {
        restart_units: vec![
            "cloudflared.service".into(),
            "vaultmesh-*.service".into(),
            "getty@*.service".into(),
        ],
        bus_address: Some(bus.address.clone()),
    });
    let status = run(
        &ctx,
        "service.status",
        json!({"unit": "cloudflared.service"}),
    )
    .await
    .unwrap();
    assert_eq!(status.status, ReceiptStatus::Ok);
    let state: serde_json::Value = serde_json::from_str(&status.output).unwrap();
    assert_eq!(state["active_state"], "failed");

    let restart = run(
        &ctx,
        "service.restart",
        json!({"unit": "cloudflared.service"}),
    )
    .await
    .unwrap();
    assert_eq!(restart.status, ReceiptStatus::Ok, "{:?}", restart.reason);
    assert!(
        restart.output.contains(
            "restart of cloudflared.service queued as job /org/freedesktop/systemd1/job/1"
        )
    );
    assert_eq!(
        systemd.unit("cloudflared.service").unwrap().active_state,
        "active"
    );

    // Listed by pattern, but systemd does not know it: the action ran and failed.
    let missing = run(
        &ctx,
        "service.restart",
        json!({"unit": "vaultmesh-nope.service"}),
    )
    .await
    .unwrap();
    assert_eq!(missing.status, ReceiptStatus::Failed);
    assert!(missing.reason.unwrap().contains("RestartUnit failed"));

    // Refused before anything runs.
    let refused = |args: serde_json::Value, action: &'static str, want: &'static str| {
        let ctx = ctx.clone();
        async move {
            let err = run(&ctx, action, args.clone()).await.unwrap_err();
            assert!(err.contains(want), "{action} {args}: {err}");
        }
    };
    refused(
        json!({"unit": "../../etc/passwd"}),
        "service.restart",
        "is not a unit name",
    )
    .await;
    refused(
        json!({"unit": "modprobe@evil.service"}),
        "service.restart",
        "unit \"modprobe@evil.service\" is not in this node's [commands.service] restart_units",
    )
    .await;
    // A pattern without an `@` never matches a template's instance (its instance is an
    // argument to the unit's program).
    refused(
        json!({"unit": "vaultmesh-x@evil.service"}),
        "service.restart",
        "unit \"vaultmesh-x@evil.service\" is not in this node's",
    )
    .await;
    // …and a pattern with one does (prepared only: this systemd has no getty).
    let restart = action::find("service.restart").unwrap();
    assert!((restart.prepare)(&ctx, json!({"unit": "getty@tty1.service"})).is_ok());
    refused(
        json!({"unit": "a.service", "bus_address": "tcp:host=127.0.0.1,port=1"}),
        "service.status",
        "unknown field `bus_address`",
    )
    .await;
}

#[tokio::test]
async fn ping_and_checks_run_only_configured_enabled_checks() {
    let ctx = ctx(ServiceSettings::default());
    let ping = run(&ctx, "agent.ping", json!({})).await.unwrap();
    assert!(ping.status == ReceiptStatus::Ok && ping.output.starts_with("pong"));
    let check = run(&ctx, "checks.run", json!({"name": "memory"}))
        .await
        .unwrap();
    assert_eq!(check.status, ReceiptStatus::Ok);
    assert!(check.output.contains("\"name\":\"memory\""));
    let unknown = run(&ctx, "checks.run", json!({"name": "nope"}))
        .await
        .unwrap_err();
    assert!(unknown.contains("no check named \"nope\""), "{unknown}");
    let disabled = run(&ctx, "checks.run", json!({"name": "load"}))
        .await
        .unwrap_err();
    assert!(disabled.contains("disabled"), "{disabled}");
    let long = run(&ctx, "checks.run", json!({"name": "x".repeat(100_000)}))
        .await
        .unwrap_err();
    assert!(
        long.len() < 200,
        "a hostile name is not echoed whole: {long}"
    );
}

/// Valid arguments of every built-in action (the table must cover the registry).
fn valid_args(name: &str) -> serde_json::Value {
    match name {
        "checks.run" => json!({"name": "memory"}),
        "service.status" | "service.restart" => json!({"unit": "cloudflared.service"}),
        _ => json!({}),
    }
}

#[test]
fn every_action_refuses_unknown_members_and_non_objects() {
    let ctx = ctx(ServiceSettings {
        restart_units: vec!["cloudflared.service".into()],
        bus_address: None,
    });
    let names: Vec<&str> = action::all().iter().map(|a| a.name).collect();
    assert_eq!(names, vaultmesh_checks::built_in_actions());
    for reg in action::all() {
        let good = valid_args(reg.name);
        assert!(
            (reg.prepare)(&ctx, good.clone()).is_ok(),
            "{} takes {good}",
            reg.name
        );
        let mut extra = good.clone();
        extra["bus_address"] = json!("nonce-tcp:host=127.0.0.1,port=9,noncefile=/etc/shadow");
        let err = (reg.prepare)(&ctx, extra).err().map(|e| e.0);
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("unknown field `bus_address`")),
            "{}: {err:?}",
            reg.name
        );
        for not_object in [json!(null), json!([]), json!("x"), json!(1)] {
            assert!(
                (reg.prepare)(&ctx, not_object.clone()).is_err(),
                "{} {not_object}",
                reg.name
            );
        }
    }
}
