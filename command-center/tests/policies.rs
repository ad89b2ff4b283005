//! Policy files: `policy check`, and reload on SIGHUP that keeps the old set when the new one is
//! invalid. Real binary.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::json;
use vaultmesh_testkit::{
    CC_BIN, ChildGuard, CommandCenter, TEST_TOKEN, binary, cc_command, heartbeat_json, text,
    wait_for, workspace_root,
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
        "[commands]\nallow = [{ action = \"service.status\", args = { unit = \"(\" } }]\n",
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

/// A typo in a policy is refused with the near name: an action the registry does not know, and
/// a file named after a shipped profile in another case (nodes would never match it).
#[test]
fn policy_check_refuses_an_unknown_action_and_a_profile_in_the_wrong_case() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::write(
        dir.path().join("ArchVault.toml"),
        "[commands]\nallow = [{ action = \"agent.ping\" }, { action = \"service.restrat\" }]\n",
    )
    .unwrap();
    let out = cc_command(&["policy", "check", d]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ArchVault.toml: commands.allow[1].action: no action \"service.restrat\"; did you mean \"service.restart\"?; actions: agent.ping, checks.run, scan.sovereign, service.restart, service.status"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("ArchVault.toml")).unwrap();
    std::fs::write(dir.path().join("archvault.toml"), "").unwrap();
    let out = cc_command(&["policy", "check", d]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("archvault.toml: \"archvault\" is not a profile: the file name is the profile nodes report, and its case matters; did you mean \"ArchVault\"? (rename it ArchVault.toml)"),
        "{err}"
    );
}

/// A node reporting a profile that has no policy file gets the defaults and no command: the
/// Command Center says so in its log, once per profile (not once per heartbeat).
#[test]
fn a_node_reporting_a_profile_without_a_policy_file_is_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let policies = workspace_root().join("policies");
    let log = dir.path().join("cc.stderr");
    let mut child = std::process::Command::new(binary(CC_BIN))
        .arg("serve")
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .arg("--policy-dir")
        .arg(&policies)
        .args(["--listen", "127.0.0.1:0", "--enroll-token", TEST_TOKEN])
        .args(["--attention-tick", "100ms"])
        .env_remove("VAULTMESH_POLICY_DIR")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _cc = ChildGuard(child);
    let url = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("listening on ")
                .nth(1)
                .map(|u| u.trim().to_string())
        })
        .expect("the server says where it listens");

    let post = |node: &str, profile: &str, seq: u64| {
        let mut hb = heartbeat_json(node, &format!("host-{}", &node[..4]), seq);
        hb["os_profile"] = json!(profile);
        let node = vaultmesh_testkit::auth::TestNode::new(node.parse().unwrap());
        let r = node.post_heartbeat(&url, &hb).unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    let nodes = [
        ("a1000000-0000-4000-8000-000000000001", "archvault"),
        ("a2000000-0000-4000-8000-000000000002", "archvault"),
        ("a3000000-0000-4000-8000-000000000003", "LabVault"),
        ("a4000000-0000-4000-8000-000000000004", "ArchVault"),
    ];
    for seq in 1..=3 {
        for (node, profile) in nodes {
            post(node, profile, seq);
        }
    }
    let warnings = |profile: &str| {
        let text = std::fs::read_to_string(&log).unwrap();
        text.lines()
            .filter(|l| l.contains(&format!("Node reports profile \"{profile}\"")))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    wait_for(Duration::from_secs(10), || {
        (!warnings("archvault").is_empty() && !warnings("LabVault").is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("no warnings: {}", std::fs::read_to_string(&log).unwrap()));
    // Ticks and heartbeats keep re-evaluating every node; the warning stays one line.
    std::thread::sleep(Duration::from_millis(500));
    post(nodes[0].0, "archvault", 4);
    std::thread::sleep(Duration::from_millis(500));
    let arch = warnings("archvault");
    assert_eq!(arch.len(), 1, "{arch:?}");
    assert!(
        arch[0].contains("which has no policy file; did you mean \"ArchVault\"?; its nodes get the default settings and no command."),
        "{arch:?}"
    );
    let lab = warnings("LabVault");
    assert_eq!(lab.len(), 1, "{lab:?}");
    assert!(!lab[0].contains("did you mean"), "{lab:?}");
    assert!(warnings("ArchVault").is_empty());
}
