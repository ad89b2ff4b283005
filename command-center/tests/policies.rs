//! Policy files: `policy check`, and reload on SIGHUP that keeps the old set when the new one is
//! invalid. Real binary.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::json;
use vaultmesh_testkit::{
    CommandCenter, cc_command, heartbeat_json, text, wait_for, workspace_root,
};

const NODE: &str = "550e8400-e29b-41d4-a716-446655440000";

#[test]
fn policy_check_accepts_the_shipped_policies_and_names_file_and_key_of_a_bad_one() {
    let shipped = workspace_root().join("policies");
    let out = cc_command(&["policy", "check", shipped.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("3 policies: ArchVault, DebianVault, Generic"),
        "{}",
        text(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ArchVault.toml"),
        "[commands]\nallow = [{ action = \"x\", args = { unit = \"(\" } }]\n",
    )
    .unwrap();
    let out = cc_command(&["policy", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ArchVault.toml: commands.allow[0].args.unit"),
        "{err}"
    );

    // The non-command sections are checked too, naming file and key.
    for (file, want) in [
        (
            "[attention]\nstale_after = \"10m\"\ncritical_after = \"5m\"\n",
            "ArchVault.toml: attention.critical_after",
        ),
        (
            "[network]\nallowed_listeners = [\"ssh\"]\n",
            "ArchVault.toml: network.allowed_listeners[0]",
        ),
        ("[scan]\nintervall = \"1h\"\n", "unknown field `intervall`"),
    ] {
        std::fs::write(dir.path().join("ArchVault.toml"), file).unwrap();
        let out = cc_command(&["policy", "check", dir.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(want), "{want}: {err}");
    }

    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        cc_command(&["policy", "check", empty.path().to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn sighup_reloads_policies_and_an_invalid_set_leaves_the_old_one_in_force() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cc.key");
    assert!(
        cc_command(&["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("ArchVault.toml");
    std::fs::write(
        &policy,
        "[commands]\nallow = [{ action = \"agent.ping\" }]\n",
    )
    .unwrap();
    let cc = CommandCenter::start_with(&[
        "--signing-key",
        key.to_str().unwrap(),
        "--policy-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        cc.post_json("/api/agent/heartbeat", &heartbeat_json(NODE, "n", 1))
            .status,
        200
    );
    let issue = |action: &str, args: serde_json::Value| {
        cc.post_json(
            "/api/commands",
            &json!({"node_id": NODE, "action": action, "args": args}),
        )
        .status
    };
    assert_eq!(issue("agent.ping", json!({})), 201);
    assert_eq!(issue("checks.run", json!({"name": "disk"})), 403);

    std::fs::write(
        &policy,
        "[commands]\nallow = [{ action = \"checks.run\", args = { name = \"disk\" } }]\n",
    )
    .unwrap();
    vaultmesh_testkit::notify::signal(cc.pid(), "HUP");
    wait_for(Duration::from_secs(5), || {
        (issue("agent.ping", json!({})) == 403).then_some(())
    })
    .expect("the new policy took effect");
    assert_eq!(issue("checks.run", json!({"name": "disk"})), 201);

    // An invalid file: refused, the previous set stays, the server stays up.
    std::fs::write(&policy, "[commands]\nallow = [{ action = 3 }]\n").unwrap();
    vaultmesh_testkit::notify::signal(cc.pid(), "HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(issue("checks.run", json!({"name": "disk"})), 201);
    assert_eq!(issue("agent.ping", json!({})), 403);
    assert_eq!(cc.get("/healthz").status, 200);
}

#[test]
fn serve_refuses_bad_configuration_with_exit_2_before_touching_the_logs() {
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("ArchVault.toml"), "[commands]\nalow = []\n").unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_dir = logs.path().join("logs");
    for extra in [
        vec!["--policy-dir", bad.path().to_str().unwrap()],
        vec!["--enroll-token", "short"],
        vec!["--signing-key", "/nonexistent/cc.key"],
    ] {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-dir",
            log_dir.to_str().unwrap(),
        ];
        args.extend(extra.iter().copied());
        let out = cc_command(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{extra:?}: {err}"
        );
    }
    assert!(
        !log_dir.join("heartbeats.jsonl").exists(),
        "no log was opened"
    );
}

#[test]
fn sighup_applies_new_attention_thresholds_and_keeps_them_when_a_new_file_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("ArchVault.toml");
    std::fs::write(
        &policy,
        "[attention]\nstale_after = \"1h\"\ncritical_after = \"2h\"\n",
    )
    .unwrap();
    let cc = CommandCenter::start_with(&[
        "--policy-dir",
        dir.path().to_str().unwrap(),
        "--attention-tick",
        "100ms",
    ]);
    let mut hb = heartbeat_json(NODE, "n1", 1);
    hb["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    assert_eq!(cc.post_json("/api/agent/heartbeat", &hb).status, 200);
    let level = || {
        cc.get_json(&format!("/api/nodes/{NODE}"))["summary"]["attention"]["level"]
            .as_str()
            .unwrap()
            .to_string()
    };
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(level(), "ok", "an hour's grace");

    std::fs::write(
        &policy,
        "[attention]\nstale_after = \"1s\"\ncritical_after = \"1s\"\n",
    )
    .unwrap();
    vaultmesh_testkit::notify::signal(cc.pid(), "HUP");
    wait_for(Duration::from_secs(3), || (level() == "crit").then_some(()))
        .expect("the reloaded thresholds apply");

    // Invalid: refused, the thresholds in force stay, the server stays up.
    std::fs::write(
        &policy,
        "[attention]\nstale_after = \"1h\"\ncritical_after = \"1s\"\n",
    )
    .unwrap();
    vaultmesh_testkit::notify::signal(cc.pid(), "HUP");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(level(), "crit");
    assert_eq!(cc.get("/healthz").status, 200);
}
