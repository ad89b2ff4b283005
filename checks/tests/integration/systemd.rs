//! The `systemd` check against a real `dbus-daemon` serving a fake `org.freedesktop.systemd1`.

use std::time::{Duration, Instant};

use vaultmesh_agent_core::registry::ConfiguredCheck;
use vaultmesh_proto::CheckStatus;
use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_failed_missing_activating_and_globs() {
    let bus = DbusDaemon::start();
    let mut restarted = FakeUnit::new("vm-web.service", "active", "running");
    restarted.restarts = 3;
    let _systemd = FakeSystemd::start(
        &bus.address,
        &[
            FakeUnit::new("cloudflared.service", "active", "running"),
            FakeUnit::new("backup.service", "failed", "failed"),
            FakeUnit::new("db.service", "activating", "start-pre"),
            FakeUnit::new("vm-api.service", "active", "running"),
            restarted,
        ],
    );
    let check = systemd_check(&units_toml(
        &bus.address,
        &[
            "cloudflared.service",
            "backup.service",
            "db.service",
            "gone.service",
            "vm-*.service",
            "none-*.service",
        ],
        "",
    ));
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
    assert_eq!(
        (
            r.metrics["units"],
            r.metrics["failed"],
            r.metrics["restarts"]
        ),
        (6.0, 1.0, 3.0)
    );
    assert!(!heartbeat_after(&done).services_ok);
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
    assert_eq!(r.summary, "D-Bus call LoadUnit timed out after 300ms");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
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
        r.summary.starts_with("D-Bus call LoadUnit failed"),
        "{}",
        r.summary
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(systemd);
}
