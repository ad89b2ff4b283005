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
    assert_eq!(
        old.calls("Subscribe"),
        1,
        "subscribed before the first run learnt; not again"
    );
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
    let done = run_until(&check, "the failure", |r| {
        r.result.metrics["failed"] == 1.0 && r.result.metrics["active"] == 1.0
    })
    .await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Crit);
    assert_eq!(
        r.summary,
        "cloudflared.service failed (failed); timer-job.service is active (running), expected inactive"
    );
    assert!(!heartbeat_after(&done).services_ok);

    systemd.set(FakeUnit::new("cloudflared.service", "reloading", "reload"));
    systemd.set(FakeUnit::new("timer-job.service", "inactive", "dead"));
    let done = run_until(&check, "the reload", |r| {
        r.result.metrics["failed"] == 0.0 && r.result.metrics["active"] == 0.0
    })
    .await;
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

/// Time for a signal the fake systemd has sent to reach the check's listener (over the test
/// bus, on this machine: well under a millisecond; a run that starts before it arrives sees
/// the change on the run after, as a node's does).
async fn delivered() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// `name`'s entry in a run's details.
fn unit_report(done: &vaultmesh_agent_core::CheckRun, name: &str) -> serde_json::Value {
    done.result.details["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .cloned()
        .unwrap()
}

/// Runs `check` every 50 ms until `done` holds (or 10 s pass, which fails the test).
async fn run_until(
    check: &ConfiguredCheck,
    what: &str,
    done: impl Fn(&vaultmesh_agent_core::CheckRun) -> bool,
) -> vaultmesh_agent_core::CheckRun {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = run(check).await;
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: not within 10 s: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `unit` after a restart between two runs: `active (running)` before and after, a new
/// `ActiveEnterTimestamp`, one restart more.
fn restarted(unit: &FakeUnit) -> FakeUnit {
    FakeUnit {
        active_enter_us: unit.active_enter_us + 5_000_000,
        restarts: unit.restarts + 1,
        ..unit.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_systemd_has_not_signalled_is_not_read_again_and_a_restart_between_runs_is_seen() {
    let bus = DbusDaemon::start();
    let a = FakeUnit::new("a.service", "active", "running");
    let systemd = FakeSystemd::start(
        &bus.address,
        &[a.clone(), FakeUnit::new("b.service", "active", "running")],
    );
    let check = systemd_check(&units_toml(&bus.address, &["a.service", "b.service"], ""));
    for _ in 0..3 {
        let r = run(&check).await.result;
        assert_eq!(r.status, CheckStatus::Ok, "{}", r.summary);
    }
    assert_eq!(
        (
            systemd.calls("Subscribe"),
            systemd.calls("ListUnitsByNames"),
            systemd.calls("GetAll(Unit)")
        ),
        (1, 1, 2),
        "subscribed once; the states and timestamps asked by the first run only"
    );

    // A restart between two runs leaves the state as it was; systemd's signal tells.
    systemd.set(restarted(&a));
    let done = run_until(&check, "the restart", |r| {
        r.result.metrics["restarts"] == 1.0
    })
    .await;
    assert_eq!(
        unit_report(&done, "a.service")["active_enter_us"].as_u64(),
        Some(a.active_enter_us + 5_000_000)
    );
    assert_eq!(
        (
            systemd.calls("ListUnitsByNames"),
            systemd.calls("GetAll(Unit)")
        ),
        (2, 3),
        "the states asked again, the timestamps only of the signalled unit"
    );
    run(&check).await;
    assert_eq!(
        (
            systemd.calls("ListUnitsByNames"),
            systemd.calls("GetAll(Unit)")
        ),
        (2, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_signal_was_lost_is_seen_with_another_units_signal_or_at_the_reread() {
    let bus = DbusDaemon::start();
    let b = FakeUnit::new("b.service", "active", "running");
    let systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("a.service", "active", "running"), b.clone()],
    );
    let check = systemd_check(&units_toml(
        &bus.address,
        &["a.service", "b.service"],
        "reread_every = \"1s\"\n",
    ));
    assert_eq!(run(&check).await.result.status, CheckStatus::Ok);
    let failed = FakeUnit {
        inactive_enter_us: 1_700_000_100_000_000,
        ..FakeUnit::new("a.service", "failed", "failed")
    };
    // a.service fails and its signal is lost; b.service restarts, signalled: the run that
    // asks for the states again sees a.service's new row and reads it again.
    systemd.set_quietly(failed);
    systemd.set(restarted(&b));
    delivered().await;
    let done = run(&check).await;
    assert_eq!(done.result.metrics["restarts"], 1.0);
    assert_eq!(
        (done.result.status, done.result.summary.as_str()),
        (CheckStatus::Crit, "a.service failed (failed)")
    );
    assert_eq!(
        unit_report(&done, "a.service")["inactive_enter_us"].as_u64(),
        Some(1_700_000_100_000_000),
        "a row that changed is read again, signal or not"
    );

    // A change with no signal at all stands unseen until every unit is read again.
    systemd.set_quietly(FakeUnit::new("a.service", "active", "running"));
    let started = Instant::now();
    let done = run_until(&check, "the reread", |r| r.result.status == CheckStatus::Ok).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "seen after {:?}: before the reread, with no signal",
        started.elapsed()
    );
    assert_eq!(done.result.summary, "2 units as expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_systemd_loads_and_a_reload_are_signalled_and_read() {
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(&bus.address, &[]);
    let check = systemd_check(&units_toml(&bus.address, &["a.service"], ""));
    let r = run(&check).await.result;
    assert_eq!(
        (r.status, r.summary.as_str()),
        (CheckStatus::Crit, "a.service not found")
    );
    // Installed and started: systemd loads it (UnitNew).
    let a = FakeUnit::new("a.service", "active", "running");
    systemd.set(a.clone());
    run_until(&check, "the new unit", |r| {
        r.result.status == CheckStatus::Ok
    })
    .await;
    // A daemon-reload may change any unit without a signal of its own.
    systemd.set_quietly(restarted(&a));
    systemd.daemon_reload();
    run_until(&check, "the change under the reload", |r| {
        r.result.metrics["restarts"] == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_subscription_every_run_reads_every_unit() {
    let bus = DbusDaemon::start();
    let a = FakeUnit::new("a.service", "active", "running");
    let systemd = FakeSystemd::start(
        &bus.address,
        &[a.clone(), FakeUnit::new("b.service", "active", "running")],
    );
    systemd.refuse_subscribe();
    let check = systemd_check(&units_toml(&bus.address, &["a.service", "b.service"], ""));
    for _ in 0..2 {
        let r = run(&check).await.result;
        assert_eq!(r.status, CheckStatus::Ok, "{}", r.summary);
    }
    assert_eq!(
        (systemd.calls("Subscribe"), systemd.calls("GetAll(Unit)")),
        (1, 4)
    );
    systemd.set_quietly(restarted(&a));
    let r = run(&check).await.result;
    assert_eq!(r.metrics["restarts"], 1.0, "seen on the very next run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_systemd_that_restarted_is_subscribed_to_again() {
    let bus = DbusDaemon::start();
    let a = FakeUnit::new("a.service", "active", "running");
    let systemd = FakeSystemd::start(&bus.address, std::slice::from_ref(&a));
    let check = systemd_check(&units_toml(&bus.address, &["a.service"], ""));
    assert_eq!(run(&check).await.result.status, CheckStatus::Ok);
    assert_eq!(systemd.calls("Subscribe"), 1);

    // systemd goes away and comes back on the same bus: the new one knows no subscriber.
    drop(systemd);
    let systemd = FakeSystemd::start(&bus.address, std::slice::from_ref(&a));
    run_until(&check, "subscribing again", |r| {
        r.result.status == CheckStatus::Ok && systemd.calls("Subscribe") == 1
    })
    .await;
    systemd.set(restarted(&a));
    run_until(&check, "the restart on the new systemd", |r| {
        r.result.metrics["restarts"] == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_no_units_to_read_keeps_nothing_for_the_next() {
    let bus = DbusDaemon::start();
    let a = FakeUnit::new("vm-a.service", "active", "running");
    let systemd = FakeSystemd::start(&bus.address, std::slice::from_ref(&a));
    let check = systemd_check(&units_toml(&bus.address, &["vm-*.service"], ""));
    assert_eq!(run(&check).await.result.status, CheckStatus::Ok);
    // The unit goes away (signalled), a run finds the glob empty, and it comes back restarted
    // with its signal lost: the run after must read it, not reuse the first run's figures.
    systemd.set(FakeUnit {
        load_state: "not-found".into(),
        ..a.clone()
    });
    run_until(&check, "the glob matching nothing", |r| {
        r.result.summary == "no unit matches vm-*.service"
    })
    .await;
    // Another run with the glob empty, once the unit's signal has surely arrived: it takes it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    run(&check).await;
    systemd.set_quietly(restarted(&a));
    let r = run(&check).await.result;
    assert_eq!(
        (r.status, r.metrics["restarts"]),
        (CheckStatus::Ok, 1.0),
        "{}",
        r.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_run_keeps_nothing_for_the_next() {
    let bus = DbusDaemon::start();
    let a = FakeUnit::new("a.service", "active", "running");
    let systemd = FakeSystemd::start(&bus.address, std::slice::from_ref(&a));
    let check = systemd_check(&units_toml(&bus.address, &["a.service"], ""));
    assert_eq!(run(&check).await.result.status, CheckStatus::Ok);
    // The restart's signal is taken by a run that systemd refuses ListUnitsByNames (it reads
    // unit by unit); the run after, with the refusal lifted, must not reuse the first run's.
    systemd.refuse_list_by_names(Refusal::AccessDenied);
    systemd.set(restarted(&a));
    delivered().await;
    assert_eq!(run(&check).await.result.metrics["restarts"], 1.0);
    systemd.allow_list_by_names();
    systemd.set_quietly(restarted(&restarted(&a)));
    assert_eq!(run(&check).await.result.metrics["restarts"], 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_neighbour_does_not_keep_a_units_figures_past_the_reread() {
    let bus = DbusDaemon::start();
    let a = FakeUnit::new("a.service", "active", "running");
    let mut b = FakeUnit::new("b.service", "active", "running");
    let systemd = FakeSystemd::start(&bus.address, &[a.clone(), b.clone()]);
    let check = systemd_check(&units_toml(
        &bus.address,
        &["a.service", "b.service"],
        "reread_every = \"1s\"\n",
    ));
    assert_eq!(run(&check).await.result.status, CheckStatus::Ok);
    // a.service restarts unsignalled; b.service restarts, signalled, before every run: each
    // run asks again and reuses a.service's figures, but only until the reread.
    systemd.set_quietly(restarted(&a));
    let started = Instant::now();
    loop {
        b = restarted(&b);
        systemd.set(b.clone());
        tokio::time::sleep(Duration::from_millis(150)).await;
        let done = run(&check).await;
        if unit_report(&done, "a.service")["restarts"] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a.service's restart not read within 3 s"
        );
    }
}
