//! The built-in command actions, run through the action registry against real peers.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;
use vaultmesh_agent_core::CheckContext;
use vaultmesh_agent_core::action::{self, ActionContext};
use vaultmesh_proto::command::ReceiptStatus;
use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};

use super::util::configured;

fn ctx() -> ActionContext {
    ActionContext {
        check_ctx: CheckContext::new(Uuid::nil(), "/"),
        checks: Arc::new(vec![configured("memory", "")]),
    }
}

async fn run(name: &str, args: serde_json::Value) -> action::ActionOutcome {
    (action::find(name).unwrap().run)(ctx(), args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_actions_talk_to_systemd_over_dbus() {
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("cloudflared.service", "failed", "failed")],
    );
    let status = run(
        "service.status",
        json!({"unit": "cloudflared.service", "bus_address": bus.address}),
    )
    .await;
    assert_eq!(status.status, ReceiptStatus::Ok);
    let state: serde_json::Value = serde_json::from_str(&status.output).unwrap();
    assert_eq!(state["active_state"], "failed");

    let restart = run(
        "service.restart",
        json!({"unit": "cloudflared.service", "bus_address": bus.address}),
    )
    .await;
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

    let missing = run(
        "service.restart",
        json!({"unit": "nope.service", "bus_address": bus.address}),
    )
    .await;
    assert_eq!(missing.status, ReceiptStatus::Failed);
    assert!(missing.reason.unwrap().contains("RestartUnit failed"));
    let bad = run("service.restart", json!({"unit": "../../etc/passwd"})).await;
    assert!(bad.reason.unwrap().contains("is not a unit name"));
    let extra = run(
        "service.status",
        json!({"unit": "a.service", "force": true}),
    )
    .await;
    assert!(extra.reason.unwrap().contains("unknown field `force`"));
}

#[tokio::test]
async fn ping_and_checks_run() {
    let ping = run("agent.ping", json!({})).await;
    assert!(ping.status == ReceiptStatus::Ok && ping.output.starts_with("pong"));
    let check = run("checks.run", json!({"name": "memory"})).await;
    assert_eq!(check.status, ReceiptStatus::Ok);
    assert!(check.output.contains("\"name\":\"memory\""));
    let unknown = run("checks.run", json!({"name": "nope"})).await;
    assert_eq!(unknown.status, ReceiptStatus::Failed);
}
