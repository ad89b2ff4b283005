//! The `systemd` check against a real `dbus-daemon` serving a fake `org.freedesktop.systemd1`.

use std::time::{Duration, Instant};

use vaultmesh_agent_core::registry::ConfiguredCheck;
use vaultmesh_proto::CheckStatus;
use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit, Refusal};

use super::util::{configured, heartbeat_after, run};

fn systemd_check(table: &str) -> ConfiguredCheck {
    configured("systemd", table)
}

fn units_toml(bus: &str, units: &[&str], extra: &str) -> String {
    let list: Vec<String> = units.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "bus_address = {bus:?}\nunits = [{}]\n{extra}",
        list.join(", ")
    )
}

/// A systemd with units in every state the verdict tells apart, one restarted three times.
fn mixed_systemd(bus: &DbusDaemon) -> FakeSystemd {
    let mut restarted = FakeUnit::new("vm-web.service", "active", "running");
    restarted.restarts = 3;
    let mut timer = FakeUnit::new("backup.timer", "active", "waiting");
    timer.inactive_enter_us = 1_690_000_000_000_000;
    FakeSystemd::start(
        &bus.address,
        &[
            FakeUnit::new("cloudflared.service", "active", "running"),
            FakeUnit::new("backup.service", "failed", "failed"),
            FakeUnit::new("db.service", "activating", "start-pre"),
            FakeUnit::new("vm-api.service", "active", "running"),
            restarted,
            timer,
        ],
    )
}

/// The check watching every unit of [`mixed_systemd`], a unit that does not exist and a glob
/// that matches nothing.
fn mixed_check(bus: &DbusDaemon) -> ConfiguredCheck {
    systemd_check(&units_toml(
        &bus.address,
        &[
            "cloudflared.service",
            "backup.service",
            "backup.timer",
            "db.service",
            "gone.service",
            "vm-*.service",
            "none-*.service",
        ],
        "",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_failed_missing_activating_and_globs() {
    let bus = DbusDaemon::start();
    let systemd = mixed_systemd(&bus);
    let check = mixed_check(&bus);
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Crit, "{}", r.summary);
    assert_eq!(
        r.summary,
        "no unit matches none-*.service; backup.service failed (failed); gone.service not found; db.service is activating (start-pre)"
    );
    let units = r.details["units"].as_array().unwrap();
    let names: Vec<&str> = units.iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "backup.service",
            "backup.timer",
            "cloudflared.service",
            "db.service",
            "gone.service",
            "vm-api.service",
            "vm-web.service"
        ]
    );
    let web = units
        .iter()
        .find(|u| u["name"] == "vm-web.service")
        .unwrap();
    assert_eq!(
        (web["restarts"].as_u64(), web["active_enter_us"].as_u64()),
        (Some(3), Some(1_700_000_000_000_000))
    );
    let timer = units.iter().find(|u| u["name"] == "backup.timer").unwrap();
    assert_eq!(
        (
            timer["sub_state"].as_str(),
            timer["inactive_enter_us"].as_u64(),
            timer.get("restarts")
        ),
        (Some("waiting"), Some(1_690_000_000_000_000), None),
        "a unit that is not a service has no restart count"
    );
    let gone = units.iter().find(|u| u["name"] == "gone.service").unwrap();
    assert_eq!(
        (
            gone["load_state"].as_str(),
            gone["active_enter_us"].as_u64(),
            gone.get("restarts")
        ),
        (Some("not-found"), Some(0), None)
    );
    assert_eq!(
        (
            r.metrics["units"],
            r.metrics["failed"],
            r.metrics["restarts"]
        ),
        (7.0, 1.0, 3.0)
    );
    assert!(!heartbeat_after(&done).services_ok);
    // All seven states in one ListUnitsByNames (the globs still expand with
    // ListUnitsByPatterns), no unit loaded one by one.
    assert_eq!(
        (
            systemd.calls("ListUnitsByNames"),
            systemd.calls("LoadUnit"),
            systemd.calls("ListUnitsByPatterns")
        ),
        (1, 0, 2)
    );
}

/// What a run reports, without the time it took.
fn report(done: &vaultmesh_agent_core::CheckRun) -> serde_json::Value {
    let r = &done.result;
    serde_json::json!({
        "status": r.status, "summary": r.summary, "metrics": r.metrics, "details": r.details,
        "services_ok": heartbeat_after(done).services_ok,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_systemd_without_list_units_by_names_is_asked_unit_by_unit_with_the_same_result() {
    let bus = DbusDaemon::start();
    let systemd = mixed_systemd(&bus);
    let by_names = report(&run(&mixed_check(&bus)).await);

    let old_bus = DbusDaemon::start();
    let old = mixed_systemd(&old_bus);
    old.refuse_list_by_names(Refusal::UnknownMethod);
    let check = mixed_check(&old_bus);
    let first = report(&run(&check).await);
    let second = report(&run(&check).await);
    assert_eq!(first, by_names, "the same report, unit by unit");
    assert_eq!(second, by_names);
    assert_eq!(
        (old.calls("ListUnitsByNames"), old.calls("LoadUnit")),
        (1, 2 * 7),
        "asked once; then each of the seven units (two from a glob), every run"
    );
    assert_eq!(systemd.calls("LoadUnit"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_that_denies_list_units_by_names_is_asked_unit_by_unit_and_again_next_run() {
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("a.service", "active", "running")],
    );
    systemd.refuse_list_by_names(Refusal::AccessDenied);
    let check = systemd_check(&units_toml(&bus.address, &["a.service", "b.service"], ""));
    for _ in 0..2 {
        let r = run(&check).await.result;
        assert_eq!(
            (r.status, r.summary.as_str()),
            (CheckStatus::Crit, "b.service not found")
        );
    }
    // A refusal is not a missing method: a policy may change, so each run asks again.
    assert_eq!(
        (systemd.calls("ListUnitsByNames"), systemd.calls("LoadUnit")),
        (2, 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_units_are_ok_and_a_failure_is_seen_on_the_next_run() {
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[
            FakeUnit::new("cloudflared.service", "active", "running"),
            FakeUnit::new("timer-job.service", "inactive", "dead"),
        ],
    );
    let check = systemd_check(&units_toml(
        &bus.address,
        &["cloudflared.service", "timer-job.service"],
        "expect = { \"timer-job.service\" = \"inactive\" }\n",
    ));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(
        (r.status, r.summary.as_str()),
        (CheckStatus::Ok, "2 units as expected")
    );
    assert!(heartbeat_after(&done).services_ok);

    systemd.set(FakeUnit::new("cloudflared.service", "failed", "failed"));
    systemd.set(FakeUnit::new("timer-job.service", "active", "running"));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Crit);
    assert_eq!(
        r.summary,
        "cloudflared.service failed (failed); timer-job.service is active (running), expected inactive"
    );
    assert!(!heartbeat_after(&done).services_ok);

    systemd.set(FakeUnit::new("cloudflared.service", "reloading", "reload"));
    systemd.set(FakeUnit::new("timer-job.service", "inactive", "dead"));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(
        (r.status, r.summary.as_str()),
        (
            CheckStatus::Warn,
            "cloudflared.service is reloading (reload)"
        )
    );
    assert!(
        heartbeat_after(&done).services_ok,
        "warn still counts as services up"
    );
}

#[tokio::test]
async fn no_bus_is_unknown_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix:path={}", dir.path().join("no-bus").display());
    let check = systemd_check(&units_toml(&addr, &["cloudflared.service"], ""));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Unknown);
    assert!(
        r.summary
            .starts_with(&format!("cannot connect to the system bus at {addr}")),
        "{}",
        r.summary
    );
    let mut hb = heartbeat_after(&done);
    assert!(hb.services_ok, "no bus is not services down");
    hb.checks.push(done.result);
    assert_eq!(hb.services(), vaultmesh_proto::Services::Unknown);
}

#[tokio::test]
async fn no_units_configured_needs_no_bus() {
    let check = systemd_check("bus_address = \"unix:path=/nonexistent\"\n");
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Ok, "{}", r.summary);
    assert!(heartbeat_after(&done).services_ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_systemd_times_out_instead_of_hanging() {
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("a.service", "active", "running")],
    );
    systemd.hang_on("a.service");
    let check = systemd_check(&units_toml(
        &bus.address,
        &["a.service"],
        "call_timeout = \"300ms\"\n",
    ));
    let started = Instant::now();
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Unknown, "{}", r.summary);
    assert_eq!(
        r.summary,
        "D-Bus call ListUnitsByNames timed out after 300ms"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    // Unit by unit (a systemd older than 230), the wedged call is LoadUnit.
    systemd.refuse_list_by_names(Refusal::UnknownMethod);
    let check = systemd_check(&units_toml(
        &bus.address,
        &["a.service"],
        "call_timeout = \"300ms\"\n",
    ));
    let started = Instant::now();
    let r = run(&check).await.result;
    assert_eq!(
        (r.status, r.summary.as_str()),
        (
            CheckStatus::Unknown,
            "D-Bus call LoadUnit timed out after 300ms"
        )
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_that_disappears_mid_check_is_unknown_quickly() {
    let mut bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("a.service", "active", "running")],
    );
    systemd.hang_on("a.service");
    // A long call timeout: the check must notice the lost bus, not wait the timeout out.
    let check = systemd_check(&units_toml(
        &bus.address,
        &["a.service"],
        "call_timeout = \"20s\"\n",
    ));
    let started = Instant::now();
    let pending = tokio::spawn(async move { run(&check).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.kill();
    let r = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("check hung")
        .unwrap()
        .result;
    assert_eq!(r.status, CheckStatus::Unknown, "{}", r.summary);
    assert!(
        r.summary.starts_with("D-Bus call ListUnitsByNames failed"),
        "{}",
        r.summary
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(systemd);
}
