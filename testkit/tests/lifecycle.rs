//! Both programs behave as `Type=notify` services: `READY=1` once serving, `WATCHDOG=1` pings
//! when systemd asks for them, and a clean exit with `STOPPING=1` on SIGTERM. The real binaries,
//! a real notification socket.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use vaultmesh_testkit::notify::{NotifySocket, terminate};
use vaultmesh_testkit::{CommandCenter, NodeAgent};

#[test]
fn command_center_notifies_ready_pings_the_watchdog_and_stops_on_sigterm() {
    let mut notify = NotifySocket::bind();
    let sock = notify.path().display().to_string();
    let mut cc = CommandCenter::start_with_env(
        &[],
        &[("NOTIFY_SOCKET", &sock), ("WATCHDOG_USEC", "200000")],
    );
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(5)),
        "no READY=1: {:?}",
        notify.seen()
    );
    assert!(
        notify
            .seen()
            .iter()
            .any(|m| m.contains("STATUS=serving on 127.0.0.1:")),
        "{:?}",
        notify.seen()
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(notify.wait_for("WATCHDOG=1", Duration::from_secs(2)));
    let pings = notify.count("WATCHDOG=1");

    let started = Instant::now();
    terminate(cc.pid());
    let status = cc
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        notify.wait_for("STOPPING=1", Duration::from_secs(1)),
        "{:?}",
        notify.seen()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(pings >= 1, "{:?}", notify.seen());
}

/// Once `serve` prints that it listens, SIGTERM is a clean stop — the signal handler is in
/// place before the line, not installed by a task that may not have run yet — so a stop sent
/// at once exits 0 and writes the state snapshot instead of dying of the signal.
#[test]
fn sigterm_as_soon_as_the_command_center_says_it_listens_is_a_clean_stop() {
    use std::io::BufRead;
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = CommandCenter::serve_command(dir.path(), &[], None);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = vaultmesh_testkit::ChildGuard(cmd.spawn().unwrap());
        let stdout = child.0.stdout.take().unwrap();
        let listening = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("listening on"));
        assert!(listening);
        terminate(child.0.id());
        let status = child
            .wait_exit(Duration::from_secs(10))
            .expect("did not exit within 10 s of SIGTERM");
        assert!(status.success(), "exit status {status:?}");
        assert!(dir.path().join("logs/state.snapshot").exists());
    }
}

#[test]
fn agent_notifies_ready_even_when_the_command_center_is_down_and_stops_on_sigterm() {
    let mut notify = NotifySocket::bind();
    let sock = notify.path().display().to_string();
    // Nobody listens on this port: readiness must not wait for the Command Center.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = NodeAgent::new(&format!("http://127.0.0.1:{port}"))
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "200000")
        .env("VAULTMESH_INTERVAL", "30s");
    let mut child = agent.spawn(&["run"]);
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(10)),
        "no READY=1: {:?}",
        notify.seen()
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        notify.wait_for("WATCHDOG=1", Duration::from_secs(2)),
        "{:?}",
        notify.seen()
    );
    assert!(
        notify.count("WATCHDOG=1") >= 2,
        "watchdog pings must not wait for the 30 s heartbeat: {:?}",
        notify.seen()
    );

    terminate(child.0.id());
    let status = child
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        notify.wait_for("STOPPING=1", Duration::from_secs(1)),
        "{:?}",
        notify.seen()
    );
}
